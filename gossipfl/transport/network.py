"""The network seam: how a node accepts and opens authenticated channels.

A node never opens sockets itself; it is handed a :class:`Network`.  The
daemon's is :class:`~gossipfl.transport.tcp.TcpNetwork` (TCP + TLS 1.3);
tests and the simulator use
:class:`~gossipfl.transport.memory.MemoryNetwork` (trio memory streams,
with the same TLS handshake by default).  Both hand out
:class:`MessageChannel` objects that carry the peer's authenticated node id.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog
import trio

from gossipfl.protocol import Role, Session
from gossipfl.transport.admission import Admission
from gossipfl.transport.channel import MessageChannel, PeerError, Timeouts, Traffic
from gossipfl.transport.refusals import RefusalLog
from gossipfl.transport.tls import HandshakeError, secure_stream

log = structlog.get_logger("gossipfl.transport")
ChannelHandler = Callable[[MessageChannel], Awaitable[None]]


@dataclass(frozen=True)
class ChannelSettings:
    """What every channel of one node shares."""

    timeouts: Timeouts
    max_frame_bytes: int
    traffic: Traffic = field(default_factory=Traffic)

    def channel(
        self, stream: trio.abc.Stream, role: Role, node_id: str, address: str
    ) -> MessageChannel:
        return MessageChannel(
            stream,
            Session(role, self.max_frame_bytes),
            peer_label(node_id, address),
            self.timeouts,
            node_id=node_id,
            traffic=self.traffic,
            host=address.rsplit(":", 1)[0] if ":" in address else address,  # IPv4 or a name
        )


@dataclass(frozen=True)
class Address:
    """Where peers reach a listening node: the hosts to announce (most
    preferred first) and the port."""

    hosts: tuple[str, ...]
    port: int


def peer_label(node_id: str, address: str) -> str:
    """How logs name an authenticated peer: short node id and address."""
    return f"{node_id[:12]}@{address}"


class Network(Protocol):
    """Listens for and dials authenticated message channels.  ``refusals``
    counts (and logs, without flooding) the handshakes it refused."""

    refusals: RefusalLog

    async def serve(
        self,
        handler: ChannelHandler,
        settings: ChannelSettings,
        *,
        task_status: trio.TaskStatus[Address],
    ) -> None:
        """Accept connections until cancelled.

        Reports the :class:`Address` peers should dial through
        ``task_status`` once accepting.  Each connection that authenticates
        becomes a responder channel, handed to ``handler`` in a task of its
        own; a failed handshake is logged with the remote address and
        closes that connection only.  Whatever ``handler`` raises is logged
        and ends that connection only (see :func:`run_handler`): it never
        reaches the caller.  Raises ``OSError`` if it cannot listen at all.
        """
        ...

    async def dial(
        self,
        host: str,
        port: int,
        settings: ChannelSettings,
        *,
        deadline: float,
        expected_node_id: str | None = None,
    ) -> MessageChannel:
        """Connect to ``host:port`` and authenticate by ``deadline`` (trio
        time); the peer must be ``expected_node_id`` when given.

        Returns an initiator channel.  Raises
        :class:`~gossipfl.transport.tls.HandshakeError` (timeout, failed
        handshake, wrong node id) or ``OSError`` (refused, unreachable),
        both naming the address.  Cancellation leaves nothing open.
        """
        ...


async def accept_channel(
    stream: trio.abc.Stream,
    address: str,
    settings: ChannelSettings,
    handler: ChannelHandler,
    *,
    context: ssl.SSLContext | None = None,
    node_id: str = "",
    refusals: RefusalLog,
    admission: Admission | None = None,
) -> None:
    """Serve one accepted connection: authenticate it (the TLS handshake
    with ``context``; without one, ``node_id`` is what the network vouches
    for), then :func:`run_handler` on its responder channel.  A failed
    handshake closes this connection only, and is logged with ``address``
    (through ``refusals``, which keeps a flood of them to a line a minute
    per address).  ``admission`` caps connections, handshakes and their
    rate per address: a connection over a cap is closed before its
    handshake, and logged the same way; and the connections one node id
    holds at once: one over that cap is closed after its handshake."""
    if admission is not None:
        reason = admission.admit(address.rsplit(":", 1)[0])
        if reason is not None:
            refusals.refused(address, reason)
            await trio.aclose_forcefully(stream)
            return
    try:
        if context is not None:
            try:
                if admission is not None:
                    admission.handshakes += 1
                stream, node_id = await secure_stream(
                    stream, context, server_side=True, timeout_s=settings.timeouts.handshake
                )
            except HandshakeError as exc:
                refusals.refused(address, str(exc))
                await trio.aclose_forcefully(stream)
                return
            finally:
                if admission is not None:
                    admission.handshakes -= 1
        if admission is not None:
            reason = admission.admit_node(node_id)
            if reason is not None:
                refusals.refused(address, reason)
                await trio.aclose_forcefully(stream)
                return
        try:
            await run_handler(handler, settings.channel(stream, Role.RESPONDER, node_id, address))
        finally:
            if admission is not None:
                admission.node_closed(node_id)
    finally:
        if admission is not None:
            admission.closed()


async def dialled_channel(
    stream: trio.abc.Stream,
    address: str,
    settings: ChannelSettings,
    *,
    deadline: float,
    expected_node_id: str | None,
    context: ssl.SSLContext | None = None,
    node_id: str = "",
) -> MessageChannel:
    """The initiator channel over a connection we opened to ``address``:
    authenticated by the TLS handshake with ``context`` by ``deadline``
    (without one, ``node_id`` is what the network vouches for), and checked
    against ``expected_node_id``.  On any failure the stream is closed;
    :class:`HandshakeError` names the address."""
    try:
        if context is not None:
            stream, node_id = await secure_stream(
                stream,
                context,
                server_side=False,
                timeout_s=max(deadline - trio.current_time(), 0.0),
                expected_node_id=expected_node_id,
            )
        elif expected_node_id is not None and node_id != expected_node_id:
            raise HandshakeError(f"peer is node {node_id[:16]}…, expected {expected_node_id[:16]}…")
    except HandshakeError as exc:
        await trio.aclose_forcefully(stream)
        raise HandshakeError(f"{address}: {exc}") from None
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return settings.channel(stream, Role.INITIATOR, node_id, address)


async def run_handler(handler: ChannelHandler, channel: MessageChannel) -> None:
    """Run ``handler`` on one accepted channel so that nothing it raises
    can escape: a :class:`PeerError` was logged where it arose; anything
    else is a bug on our side, logged with its traceback and the peer.
    Either way only this connection ends."""
    try:
        await handler(channel)
    except PeerError:
        pass
    except Exception:
        log.error("connection_handler_failed", peer=channel.peer, exc_info=True)
    finally:
        await channel.aclose()
