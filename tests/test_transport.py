"""Networks and channels: TLS 1.3 over TCP and over memory streams, who may
connect, and what a channel does when the peer stalls, leaves or says bye."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import structlog.testing
import trio
import trio.testing

from gossipfl.protocol import Bye, Hello, Role, Session, State
from gossipfl.transport import (
    Address,
    ChannelSettings,
    HandshakeError,
    MemoryNetwork,
    MemoryWire,
    MessageChannel,
    NodeIdentity,
    PeerError,
    TcpNetwork,
    Timeouts,
    Traffic,
    dial_tcp,
    secure_stream,
    tls_context,
)
from tests.swarm_fixtures import MAX_FRAME, Swarm, tls_pair


async def test_handshake_is_tls13_and_names_each_peer(swarm: Swarm) -> None:
    a, b = await tls_pair(swarm.members[0], swarm.members[1])
    assert isinstance(a.stream, trio.SSLStream)
    assert a.stream.version() == "TLSv1.3"
    assert swarm.members[1].node_id.startswith(a.peer)
    assert swarm.members[0].node_id.startswith(b.peer)


SETTINGS = ChannelSettings(Timeouts(handshake=5), MAX_FRAME)


async def _serve_one(
    identity: NodeIdentity,
    nursery: trio.Nursery,
    handler: Callable[[MessageChannel], Awaitable[None]],
    settings: ChannelSettings = SETTINGS,
) -> int:
    network = TcpNetwork(identity, "127.0.0.1", 0)
    address: Address = await nursery.start(network.serve, handler, settings)
    assert address.hosts == ("127.0.0.1",)
    return address.port


async def _dial(
    identity: NodeIdentity,
    port: int,
    expected: str | None = None,
    settings: ChannelSettings = SETTINGS,
) -> MessageChannel:
    return await dial_tcp(
        "127.0.0.1",
        port,
        tls_context(identity, server_side=False),
        settings,
        deadline=trio.current_time() + 5,
        expected_node_id=expected,
    )


async def test_tcp_dial_and_serve_carry_messages(swarm: Swarm) -> None:
    got: list[Hello] = []
    hello = Hello(swarm.members[0].node_id, "s", "t", "topk-ef", "float32", 10, b"h", 0)

    async def handler(channel: MessageChannel) -> None:
        message = await channel.receive()
        assert isinstance(message, Hello)
        got.append(message)
        await channel.send(Bye("done"))

    async with trio.open_nursery() as nursery:
        port = await _serve_one(swarm.members[1], nursery, handler)
        channel = await _dial(swarm.members[0], port, swarm.members[1].node_id)
        await channel.send(hello)
        assert await channel.receive() == Bye("done")
        nursery.cancel_scope.cancel()
    assert got == [hello]


async def _dial_and_read(port: int, identity: NodeIdentity) -> None:
    channel = await _dial(identity, port)
    await channel.receive()  # TLS 1.3: the server's verdict arrives after our Finished


@pytest.mark.parametrize("who", ["outsider", "expired"])
async def test_certificates_outside_the_swarm_are_refused_and_logged(
    swarm: Swarm, who: str
) -> None:
    intruder = swarm.outsider if who == "outsider" else swarm.expired

    async def handler(channel: MessageChannel) -> None:
        raise AssertionError("an intruder reached the protocol")

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            port = await _serve_one(swarm.members[0], nursery, handler)
            with pytest.raises((HandshakeError, PeerError), match=f"127.0.0.1:{port}"):
                await _dial_and_read(port, intruder)
            nursery.cancel_scope.cancel()
    refused = [e for e in logs if e["event"] == "handshake_refused"]
    assert refused, logs
    assert refused[0]["peer"].startswith("127.0.0.1:")
    expected = "certificate" if who == "outsider" else "expired"
    assert expected in refused[0]["reason"].lower()


async def test_a_member_with_an_unexpected_node_id_is_refused(swarm: Swarm) -> None:
    async def handler(channel: MessageChannel) -> None:
        await channel.receive()

    async with trio.open_nursery() as nursery:
        port = await _serve_one(swarm.members[1], nursery, handler)
        with pytest.raises(HandshakeError, match=f"expected {swarm.members[2].node_id[:16]}"):
            await _dial(swarm.members[0], port, swarm.members[2].node_id)
        nursery.cancel_scope.cancel()


async def test_plain_tcp_garbage_before_the_handshake_is_refused_and_logged(swarm: Swarm) -> None:
    async def handler(channel: MessageChannel) -> None:
        raise AssertionError("garbage reached the protocol")

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            port = await _serve_one(swarm.members[0], nursery, handler)
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            await raw.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
            with trio.fail_after(5):
                while await raw.receive_some(4096):
                    pass  # the server closes on us
            nursery.cancel_scope.cancel()
    refused = [e for e in logs if e["event"] == "handshake_refused"]
    assert refused
    assert refused[0]["peer"].startswith("127.0.0.1:")
    assert "handshake failed" in refused[0]["reason"]


async def test_one_member_cannot_hold_every_connection_a_node_admits(swarm: Swarm) -> None:
    """Defect: a member passes the handshake, so its connections counted
    only against the 512 a node keeps open at once: one member held all of
    them, idle, and every peer that had to dial again was refused
    (bench/attacks.py, "connection hoard")."""
    served: list[str] = []
    ended = trio.Event()

    async def handler(channel: MessageChannel) -> None:
        assert channel.node_id is not None
        served.append(channel.node_id)
        try:
            await channel.receive(deadline=trio.current_time() + 60)  # until it hangs up
        finally:
            ended.set()

    hoarder, honest = swarm.members[0], swarm.members[2]
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            port = await _serve_one(swarm.members[1], nursery, handler)
            held = [await _dial(hoarder, port) for _ in range(8)]
            one_more = await _dial(hoarder, port)
            with pytest.raises(PeerError, match="connection lost"):
                await one_more.receive()  # closed right after its handshake
            await _dial(honest, port)  # another node is still let in
            await held.pop().aclose()
            await ended.wait()
            await _dial(hoarder, port)  # and the hoarder again, once one of its own went
            while len(served) < 10:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert served.count(hoarder.node_id) == 9
    assert served.count(honest.node_id) == 1
    refused = [e for e in logs if e["event"] == "handshake_refused"]
    assert [e["reason"] for e in refused] == [
        f"8 connections from node {hoarder.node_id[:12]} open already"
    ]


async def test_a_stalled_handshake_times_out_in_virtual_time(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    left, _silent = trio.testing.memory_stream_pair()
    start = trio.current_time()
    with pytest.raises(HandshakeError, match="longer than 10s"):
        await secure_stream(
            left, tls_context(swarm.members[0], server_side=False), server_side=False, timeout_s=10
        )
    assert trio.current_time() - start == pytest.approx(10)


async def test_tcp_channels_know_the_authenticated_node_id_and_count_traffic(swarm: Swarm) -> None:
    traffic, served = Traffic(), Traffic()
    seen: list[str | None] = []

    async def handler(channel: MessageChannel) -> None:
        seen.append(channel.node_id)
        await channel.receive()
        await channel.send(Bye("ok"))

    async with trio.open_nursery() as nursery:
        port = await _serve_one(
            swarm.members[1], nursery, handler, ChannelSettings(Timeouts(), MAX_FRAME, served)
        )
        channel = await _dial(
            swarm.members[0], port, settings=ChannelSettings(Timeouts(), MAX_FRAME, traffic)
        )
        assert channel.node_id == swarm.members[1].node_id
        await channel.send(Hello(swarm.members[0].node_id, "s", "t", "c", "float32", 1, b"", 0))
        await channel.receive()
        nursery.cancel_scope.cancel()
    assert seen == [swarm.members[0].node_id]
    assert traffic.sent > 0
    assert traffic.received > 0
    assert served.received == traffic.sent


@pytest.mark.parametrize("network", ["tcp", "memory"])
async def test_whatever_a_handler_raises_ends_only_its_own_connection(
    swarm: Swarm, network: str
) -> None:
    """A bug triggered by one peer (here an AttributeError, as an ``assert``
    under ``-O`` would give) is logged with the peer and closes that
    connection; the listener goes on serving others."""
    served: list[str] = []

    async def handler(channel: MessageChannel) -> None:
        message = await channel.receive()
        if isinstance(message, Bye):
            raise AttributeError("'Bye' object has no attribute 'node_id'")
        served.append(type(message).__name__)
        await channel.send(Bye("served"))

    hello = Hello(swarm.members[0].node_id, "s", "t", "c", "float32", 1, b"", 0)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            if network == "tcp":
                port = await _serve_one(swarm.members[1], nursery, handler)

                async def dial() -> MessageChannel:
                    return await _dial(swarm.members[0], port)
            else:
                wire = MemoryWire()
                server = MemoryNetwork(wire, "b", swarm.members[1])
                client = MemoryNetwork(wire, "a", swarm.members[0])
                address: Address = await nursery.start(server.serve, handler, SETTINGS)

                async def dial() -> MessageChannel:
                    return await client.dial(
                        "b", address.port, SETTINGS, deadline=trio.current_time() + 5
                    )

            first = await dial()
            await first.send(Bye("hostile: bye before hello"))
            with pytest.raises(PeerError):
                await first.receive()  # the server hung up on this connection
            second = await dial()
            await second.send(hello)
            assert await second.receive() == Bye("served")
            nursery.cancel_scope.cancel()
    assert served == ["Hello"]
    failures = [e for e in logs if e["event"] == "connection_handler_failed"]
    assert len(failures) == 1
    assert failures[0]["peer"].startswith(swarm.members[0].node_id[:12])
    assert failures[0]["log_level"] == "error"


@pytest.mark.parametrize("tls", [True, False])
async def test_memory_network_authenticates_like_tcp(swarm: Swarm, tls: bool) -> None:
    wire = MemoryWire()
    server = MemoryNetwork(wire, "b", swarm.members[1], tls=tls)
    client = MemoryNetwork(wire, "a", swarm.members[0], tls=tls)
    seen: list[str | None] = []

    async def handler(channel: MessageChannel) -> None:
        seen.append(channel.node_id)
        await channel.receive()

    async with trio.open_nursery() as nursery:
        address: Address = await nursery.start(server.serve, handler, SETTINGS)
        assert address.hosts == ("b",)
        deadline = trio.current_time() + 5
        channel = await client.dial(
            "b",
            address.port,
            SETTINGS,
            deadline=deadline,
            expected_node_id=swarm.members[1].node_id,
        )
        assert channel.node_id == swarm.members[1].node_id
        stream = channel.stream
        assert isinstance(stream, trio.SSLStream) == tls
        if isinstance(stream, trio.SSLStream):
            assert stream.version() == "TLSv1.3"
        with pytest.raises(HandshakeError, match=f"b:{address.port}: .*expected"):
            await client.dial(
                "b", address.port, SETTINGS, deadline=deadline, expected_node_id="0" * 64
            )
        with pytest.raises(ConnectionRefusedError, match="nowhere:7000: connection refused"):
            await client.dial("nowhere", 7000, SETTINGS, deadline=deadline)
        await channel.send(Bye("done"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert seen[0] == swarm.members[0].node_id


async def test_an_outsider_is_refused_on_the_memory_network_too(swarm: Swarm) -> None:
    wire = MemoryWire()
    server = MemoryNetwork(wire, "b", swarm.members[0])
    intruder = MemoryNetwork(wire, "x", swarm.outsider)

    async def handler(channel: MessageChannel) -> None:
        raise AssertionError("an intruder reached the protocol")

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            address: Address = await nursery.start(server.serve, handler, SETTINGS)

            async def intrude() -> None:
                deadline = trio.current_time() + 5
                channel = await intruder.dial("b", address.port, SETTINGS, deadline=deadline)
                await channel.receive()  # TLS 1.3: the verdict comes after our Finished

            with pytest.raises((HandshakeError, PeerError)):
                await intrude()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    refused = [e for e in logs if e["event"] == "handshake_refused"]
    assert refused
    assert refused[0]["peer"] == "x"
    assert "certificate" in refused[0]["reason"].lower()


class _CountingStream(trio.abc.Stream):
    """Wraps a stream and counts reads, to catch a reader that spins."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.reads = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        self.reads += 1
        if self.reads > 100:  # a spinning reader never lets virtual time pass: stop it here
            raise AssertionError("the reader keeps reading a stream that has ended")
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_after_bye_and_end_of_stream_a_read_ends_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A responder waiting for a commit gets ``bye``, then the stream ends:
    reading on must raise at once, not spin on empty reads until the idle
    timeout (one core for two minutes per such connection)."""
    ours, theirs = trio.testing.memory_stream_pair()
    counting = _CountingStream(ours)
    responder = MessageChannel(counting, Session(Role.RESPONDER, MAX_FRAME), "peer", Timeouts())
    initiator = MessageChannel(theirs, Session(Role.INITIATOR, MAX_FRAME), "us", Timeouts())
    responder.session.state = initiator.session.state = State.IDLE  # greeted
    await initiator.send(Bye("giving up"))
    await theirs.aclose()
    assert await responder.receive() == Bye("giving up")
    reads = counting.reads
    start = trio.current_time()
    with pytest.raises(PeerError, match="after the session closed") as info:
        await responder.next_request()
    assert info.value.went_away
    assert counting.reads == reads
    assert trio.current_time() == start


async def test_a_wait_with_a_deadline_ends_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, _silent = trio.testing.memory_stream_pair()
    channel = MessageChannel(ours, Session(Role.INITIATOR, MAX_FRAME), "peer", Timeouts(read=30))
    channel.session.state = State.AWAIT_REPLY
    start = trio.current_time()
    with pytest.raises(PeerError, match=r"sent no reply to exchange 3 within 2.5s"):
        await channel.receive(deadline=start + 2.5, waiting_for="reply to exchange 3")
    assert trio.current_time() - start == pytest.approx(2.5)


async def test_an_idle_connection_is_reported_not_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, _silent = trio.testing.memory_stream_pair()
    channel = MessageChannel(ours, Session(Role.RESPONDER, MAX_FRAME), "peer", Timeouts(idle=60))
    channel.session.state = State.IDLE
    with structlog.testing.capture_logs() as logs:
        assert await channel.next_request() is None
    assert not logs
    assert trio.current_time() == pytest.approx(60)
