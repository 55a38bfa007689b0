"""TCP listener and dialer that hand out authenticated message channels."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import structlog
import trio

from gossipfl.protocol import Role, Session
from gossipfl.transport.channel import MessageChannel, Timeouts, Traffic
from gossipfl.transport.tls import HandshakeError, secure_stream

log = structlog.get_logger("gossipfl.transport")
ChannelHandler = Callable[[MessageChannel], Awaitable[None]]


def peer_label(node_id: str, address: str) -> str:
    """How logs name an authenticated peer: short node id and address."""
    return f"{node_id[:12]}@{address}"


def _address(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except OSError:
        return "?"
    return f"{host}:{port}"


async def dial(
    host: str,
    port: int,
    context: ssl.SSLContext,
    *,
    timeouts: Timeouts,
    max_frame_bytes: int,
    expected_node_id: str | None = None,
    traffic: Traffic | None = None,
) -> MessageChannel:
    """Connect, handshake, and check the peer's node id when known.

    Raises :class:`HandshakeError` or ``OSError`` (connection refused,
    unreachable), both naming the address.
    """
    address = f"{host}:{port}"
    try:
        with trio.fail_after(timeouts.handshake):
            tcp = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise HandshakeError(
            f"{address}: no TCP connection within {timeouts.handshake:g}s"
        ) from None
    except OSError as exc:
        raise OSError(exc.errno, f"{address}: {exc.strerror or exc}") from None
    try:
        stream, node_id = await secure_stream(
            tcp,
            context,
            server_side=False,
            timeout_s=timeouts.handshake,
            expected_node_id=expected_node_id,
        )
    except HandshakeError as exc:
        await trio.aclose_forcefully(tcp)
        raise HandshakeError(f"{address}: {exc}") from None
    session = Session(Role.INITIATOR, max_frame_bytes)
    label = peer_label(node_id, address)
    return MessageChannel(stream, session, label, timeouts, node_id=node_id, traffic=traffic)


async def serve(
    listeners: list[trio.SocketListener],
    context: ssl.SSLContext,
    handler: ChannelHandler,
    *,
    timeouts: Timeouts,
    max_frame_bytes: int,
    traffic: Traffic | None = None,
) -> None:
    """Accept connections forever; each gets a TLS handshake and, if it
    passes, a responder channel handed to ``handler`` in its own task.

    A failed handshake is logged with the remote address and closes that
    connection only.
    """

    async def accept(tcp: trio.SocketStream) -> None:
        address = _address(tcp)
        try:
            stream, node_id = await secure_stream(
                tcp, context, server_side=True, timeout_s=timeouts.handshake
            )
        except HandshakeError as exc:
            log.warning("handshake_refused", peer=address, reason=str(exc))
            await trio.aclose_forcefully(tcp)
            return
        session = Session(Role.RESPONDER, max_frame_bytes)
        label = peer_label(node_id, address)
        channel = MessageChannel(stream, session, label, timeouts, node_id=node_id, traffic=traffic)
        try:
            await handler(channel)
        finally:
            await channel.aclose()

    await trio.serve_listeners(accept, listeners)
