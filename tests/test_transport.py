"""TLS 1.3 channels: the stream contract, TCP, and who may connect."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import structlog.testing
import trio
import trio.testing

from gossipfl.protocol import Bye, Hello
from gossipfl.transport import (
    HandshakeError,
    MessageChannel,
    PeerError,
    Timeouts,
    Traffic,
    dial,
    secure_stream,
    serve,
    tls_context,
)
from tests.swarm_fixtures import MAX_FRAME, Swarm, tls_pair


async def test_secure_stream_passes_the_trio_stream_contract(swarm: Swarm) -> None:
    client_ctx = tls_context(swarm.members[0], server_side=False)
    server_ctx = tls_context(swarm.members[1], server_side=True)

    async def stream_maker() -> tuple[
        trio.SSLStream[trio.abc.Stream], trio.SSLStream[trio.abc.Stream]
    ]:
        left, right = trio.testing.memory_stream_pair()
        return (
            trio.SSLStream(left, client_ctx),
            trio.SSLStream(right, server_ctx, server_side=True),
        )

    await trio.testing.check_two_way_stream(stream_maker, None)


async def test_handshake_is_tls13_and_names_each_peer(swarm: Swarm) -> None:
    a, b = await tls_pair(swarm.members[0], swarm.members[1])
    assert isinstance(a.stream, trio.SSLStream)
    assert a.stream.version() == "TLSv1.3"
    assert swarm.members[1].node_id.startswith(a.peer)
    assert swarm.members[0].node_id.startswith(b.peer)


async def _serve_one(
    context: ssl.SSLContext,
    nursery: trio.Nursery,
    handler: Callable[[MessageChannel], Awaitable[None]],
    traffic: Traffic | None = None,
) -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    nursery.start_soon(
        functools.partial(
            serve,
            listeners,
            context,
            handler,
            timeouts=Timeouts(handshake=5),
            max_frame_bytes=MAX_FRAME,
            traffic=traffic,
        )
    )
    return port


async def test_tcp_dial_and_serve_carry_messages(swarm: Swarm) -> None:
    got: list[Hello] = []
    hello = Hello(swarm.members[0].node_id, "s", "t", "topk-ef", 10, b"h", 0)

    async def handler(channel: MessageChannel) -> None:
        message = await channel.receive()
        assert isinstance(message, Hello)
        got.append(message)
        await channel.send(Bye("done"))

    async with trio.open_nursery() as nursery:
        port = await _serve_one(tls_context(swarm.members[1], server_side=True), nursery, handler)
        channel = await dial(
            "127.0.0.1",
            port,
            tls_context(swarm.members[0], server_side=False),
            timeouts=Timeouts(),
            max_frame_bytes=MAX_FRAME,
            expected_node_id=swarm.members[1].node_id,
        )
        await channel.send(hello)
        assert await channel.receive() == Bye("done")
        nursery.cancel_scope.cancel()
    assert got == [hello]


async def _dial_and_read(port: int, context: ssl.SSLContext) -> None:
    channel = await dial(
        "127.0.0.1", port, context, timeouts=Timeouts(handshake=5), max_frame_bytes=MAX_FRAME
    )
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
            port = await _serve_one(
                tls_context(swarm.members[0], server_side=True), nursery, handler
            )
            with pytest.raises((HandshakeError, PeerError), match=f"127.0.0.1:{port}"):
                await _dial_and_read(port, tls_context(intruder, server_side=False))
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
        port = await _serve_one(tls_context(swarm.members[1], server_side=True), nursery, handler)
        with pytest.raises(HandshakeError, match=f"expected {swarm.members[2].node_id[:16]}"):
            await dial(
                "127.0.0.1",
                port,
                tls_context(swarm.members[0], server_side=False),
                timeouts=Timeouts(),
                max_frame_bytes=MAX_FRAME,
                expected_node_id=swarm.members[2].node_id,
            )
        nursery.cancel_scope.cancel()


async def test_plain_tcp_garbage_before_the_handshake_is_refused_and_logged(swarm: Swarm) -> None:
    async def handler(channel: MessageChannel) -> None:
        raise AssertionError("garbage reached the protocol")

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            port = await _serve_one(
                tls_context(swarm.members[0], server_side=True), nursery, handler
            )
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


def test_fixture_dirs_exist(swarm: Swarm) -> None:
    assert Path(swarm.members[0].cert_path).exists()


async def test_tcp_channels_know_the_authenticated_node_id_and_count_traffic(swarm: Swarm) -> None:
    traffic, served = Traffic(), Traffic()
    seen: list[str | None] = []

    async def handler(channel: MessageChannel) -> None:
        seen.append(channel.node_id)
        await channel.receive()
        await channel.send(Bye("ok"))

    async with trio.open_nursery() as nursery:
        ctx = tls_context(swarm.members[1], server_side=True)
        port = await _serve_one(ctx, nursery, handler, served)
        channel = await dial(
            "127.0.0.1",
            port,
            tls_context(swarm.members[0], server_side=False),
            timeouts=Timeouts(),
            max_frame_bytes=MAX_FRAME,
            traffic=traffic,
        )
        assert channel.node_id == swarm.members[1].node_id
        await channel.send(Hello(swarm.members[0].node_id, "s", "t", "c", 1, b"", 0))
        await channel.receive()
        nursery.cancel_scope.cancel()
    assert seen == [swarm.members[0].node_id]
    assert traffic.sent > 0
    assert traffic.received > 0
    assert served.received == traffic.sent
