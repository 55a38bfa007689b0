"""Emulated links: transfer times, fair sharing, drops and partitions, in
virtual time."""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio
import trio.testing

from gossipfl.protocol import Bye
from gossipfl.transport import (
    ChannelSettings,
    MemoryNetwork,
    MessageChannel,
    NodeIdentity,
    Timeouts,
)
from simnet.links import (
    IDEAL,
    SEND_BUFFER,
    EmulatedStream,
    EmulatedWire,
    Fabric,
    HostLink,
    wire_bytes,
)

MBIT = 1e6 / 8  # bytes/s
T = TypeVar("T")


def run_virtual(fn: Callable[..., Awaitable[T]], *args: object) -> T:
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


async def drain(stream: EmulatedStream, nbytes: int) -> float:
    """Read ``nbytes``; return when the last one arrived."""
    got = 0
    while got < nbytes:
        got += len(await stream.receive_some())
    return trio.current_time()


async def timed_transfers(fabric: Fabric, sizes: list[int], *, src: str = "a") -> list[float]:
    """Start one transfer of each size from ``src`` to its own receiver at
    the same instant; each one's duration until fully received."""
    wire = EmulatedWire(fabric)
    durations = [0.0] * len(sizes)

    async def one(i: int, size: int) -> None:
        ours, theirs = wire.stream_pair(src, f"r{i}")
        assert isinstance(theirs, EmulatedStream)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ours.send_all, b"x" * size)
            arrived = await drain(theirs, size)
        durations[i] = arrived - start

    async with trio.open_nursery() as nursery:
        for i, size in enumerate(sizes):
            nursery.start_soon(one, i, size)
    return durations


@pytest.mark.parametrize("size", [20_000, 2_000_000])  # within the send buffer, and not
@pytest.mark.parametrize("competing", [0, 1, 3, 10])
def test_uplink_share_matches_bytes_over_rate_plus_latency(competing: int, size: int) -> None:
    rate = 10 * MBIT
    hosts = {"a": HostLink(uplink=rate, downlink=100 * MBIT, latency_s=0.010)}
    hosts |= {f"r{i}": HostLink(latency_s=0.015) for i in range(competing + 1)}
    durations = run_virtual(timed_transfers, Fabric(hosts), [size] * (competing + 1))
    expected = wire_bytes(size) / (rate / (competing + 1)) + 0.025
    for duration in durations:
        assert duration == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("small", [10_000, 1_000_000])  # within the send buffer, and not
def test_a_transfer_speeds_up_when_a_competitor_finishes(small: int) -> None:
    rate = 8 * MBIT
    fabric = Fabric({"a": HostLink(uplink=rate)})
    large = 3 * small
    short, long = run_virtual(timed_transfers, fabric, [small, large])
    assert short == pytest.approx(2 * wire_bytes(small) / rate, rel=0.01)
    # Shared until the small one is done, then the whole uplink.
    assert long == pytest.approx(short + (wire_bytes(large) - wire_bytes(small)) / rate, rel=0.01)


def test_the_slower_end_bounds_a_transfer() -> None:
    fabric = Fabric({"a": HostLink(uplink=100 * MBIT), "r0": HostLink(downlink=MBIT)})
    (duration,) = run_virtual(timed_transfers, fabric, [500_000])
    assert duration == pytest.approx(wire_bytes(500_000) / MBIT, rel=0.01)


def test_a_write_returns_once_the_rest_fits_the_send_buffer() -> None:
    rate = MBIT
    fabric = Fabric({"a": HostLink(uplink=rate, latency_s=0.01)})
    wire = EmulatedWire(fabric)
    small, large = 1_000, SEND_BUFFER + 125_000

    async def scenario() -> tuple[float, float, float]:
        ours, theirs = wire.stream_pair("a", "b")
        assert isinstance(theirs, EmulatedStream)
        await ours.send_all(b"x" * small)
        small_returned = trio.current_time()
        await ours.send_all(b"x" * large)
        large_returned = trio.current_time()
        return small_returned, large_returned, await drain(theirs, small + large)

    small_returned, large_returned, arrived = run_virtual(scenario)
    assert small_returned == 0.0  # a small message costs its sender no wait
    # ... a large one waits while all but a buffer's worth leaves
    on_the_wire = wire_bytes(small) + wire_bytes(large)
    assert large_returned == pytest.approx((on_the_wire - SEND_BUFFER) / rate)
    assert arrived == pytest.approx(on_the_wire / rate + 0.01)


def test_a_degraded_link_slows_a_transfer_in_flight() -> None:
    fabric = Fabric({"a": HostLink(uplink=10 * MBIT)})

    async def scenario() -> list[float]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_degrade_after, fabric, 0.4)
            return await timed_transfers(fabric, [1_000_000])

    (duration,) = run_virtual(scenario)
    # 0.4 s at 10 Mbit/s moves 500 kB on the wire; the rest at 1 Mbit/s.
    assert duration == pytest.approx(0.4 + (wire_bytes(1_000_000) - 500_000) / MBIT, rel=0.01)


async def _degrade_after(fabric: Fabric, seconds: float) -> None:
    await trio.sleep(seconds)
    fabric.set_link("a", HostLink(uplink=MBIT))


def test_a_dropped_link_breaks_both_ends_mid_transfer() -> None:
    fabric = Fabric({"a": HostLink(uplink=MBIT)})
    wire = EmulatedWire(fabric)

    async def scenario() -> tuple[str, str, float]:
        ours, theirs = wire.stream_pair("a", "b")
        outcomes: list[str] = []

        async def send() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await ours.send_all(b"x" * 1_000_000)
            outcomes.append("send broke")

        async def receive() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await theirs.receive_some()
            outcomes.append("receive broke")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(receive)
            await trio.sleep(1.0)
            fabric.drop("a", "b")
        return outcomes[0], outcomes[1], trio.current_time()

    *outcomes, ended = run_virtual(scenario)
    assert sorted(outcomes) == ["receive broke", "send broke"]
    assert ended == pytest.approx(1.0)  # at the drop, not when the 8 s transfer would end


@pytest.mark.parametrize("uplink", [IDEAL, MBIT])
def test_close_is_end_of_stream_after_the_data_arrives(uplink: float) -> None:
    fabric = Fabric({"a": HostLink(uplink=uplink, latency_s=0.05)})
    wire = EmulatedWire(fabric)

    async def scenario() -> list[tuple[bytes | bytearray, float]]:
        ours, theirs = wire.stream_pair("a", "b")
        await ours.send_all(b"hello")
        await ours.aclose()
        got = []
        for _ in range(3):
            got.append((await theirs.receive_some(), trio.current_time()))
        return got

    arrival = wire_bytes(5) / uplink + 0.05
    assert run_virtual(scenario) == [(b"hello", arrival), (b"", arrival), (b"", arrival)]


def _network(wire: EmulatedWire, host: str, identity: NodeIdentity) -> MemoryNetwork:
    return MemoryNetwork(wire, host, identity)


def test_tls_channels_cross_emulated_links_and_partitions_time_out(
    members: list[NodeIdentity],
) -> None:
    latency = 0.02
    fabric = Fabric({h: HostLink(uplink=MBIT, downlink=MBIT, latency_s=latency) for h in "ab"})
    wire = EmulatedWire(fabric)
    settings = ChannelSettings(Timeouts(), 1 << 20)
    received: list[str] = []
    heard = trio.Event()

    async def handler(channel: MessageChannel) -> None:
        message = await channel.receive(deadline=trio.current_time() + 5)
        assert isinstance(message, Bye)
        received.append(message.reason)
        heard.set()

    async def scenario() -> tuple[float, float]:
        a, b = _network(wire, "a", members[0]), _network(wire, "b", members[1])
        async with trio.open_nursery() as nursery:
            address = await nursery.start(b.serve, handler, settings)
            start = trio.current_time()
            channel = await a.dial("b", address.port, settings, deadline=start + 5)
            dialled = trio.current_time() - start
            await channel.say_bye("over an emulated link")
            await heard.wait()
            fabric.partition([["a"], ["b"]])
            start = trio.current_time()
            with pytest.raises(OSError, match="timed out") as refused:
                await a.dial("b", address.port, settings, deadline=start + 3)
            assert refused.value.errno == errno.ETIMEDOUT
            waited = trio.current_time() - start
            nursery.cancel_scope.cancel()
        return dialled, waited

    dialled, waited = run_virtual(scenario)
    assert received == ["over an emulated link"]
    # A connect round trip, then TLS 1.3: at least one more, plus the bytes.
    assert dialled >= 4 * 2 * latency
    assert waited == pytest.approx(3.0)


def test_an_idle_shaped_link_passes_its_burst_at_once_then_runs_at_its_rate() -> None:
    """A token-bucket shaper (tc's tbf on the host bed) lets an idle link
    send its bucket at once: small transfers took less than bytes / rate
    on real shaped links (bench/calibration.py)."""
    rate, burst = MBIT, 2000.0
    fabric = Fabric({"a": HostLink(uplink=rate, burst_bytes=burst)})
    (first,) = run_virtual(timed_transfers, fabric, [10_000])
    assert first == pytest.approx((wire_bytes(10_000) - burst) / rate, rel=0.01)
    # Two at once: the bucket once, for both.
    both = run_virtual(
        timed_transfers, Fabric({"a": HostLink(uplink=rate, burst_bytes=burst)}), [10_000, 10_000]
    )
    assert max(both) == pytest.approx((2 * wire_bytes(10_000) - burst) / rate, rel=0.01)
