"""The daemon's network: TCP with TLS 1.3 and mutual authentication."""

from __future__ import annotations

import ssl

import structlog
import trio

from gossipfl.protocol import Role
from gossipfl.transport.channel import MessageChannel
from gossipfl.transport.identity import NodeIdentity
from gossipfl.transport.network import Address, ChannelHandler, ChannelSettings, run_handler
from gossipfl.transport.tls import HandshakeError, secure_stream, tls_context

log = structlog.get_logger("gossipfl.transport")


def _address(stream: trio.SocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except OSError:
        return "?"
    return f"{host}:{port}"


class TcpNetwork:
    """Listens on ``listen_host:listen_port`` (port 0: any free one) and
    tells peers to dial ``advertise_hosts`` (default: the listen host).

    The TLS contexts are built once, here: loading keys and certificates
    for every dial would cost more than the handshake.
    """

    def __init__(
        self,
        identity: NodeIdentity,
        listen_host: str,
        listen_port: int,
        advertise_hosts: tuple[str, ...] = (),
    ) -> None:
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.advertise_hosts = advertise_hosts or (listen_host,)
        self.client_context = tls_context(identity, server_side=False)
        self.server_context = tls_context(identity, server_side=True)

    async def serve(
        self,
        handler: ChannelHandler,
        settings: ChannelSettings,
        *,
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.listen_port, host=self.listen_host)
        port: int = listeners[0].socket.getsockname()[1]

        async def accept(tcp: trio.SocketStream) -> None:
            address = _address(tcp)
            try:
                stream, node_id = await secure_stream(
                    tcp,
                    self.server_context,
                    server_side=True,
                    timeout_s=settings.timeouts.handshake,
                )
            except HandshakeError as exc:
                log.warning("handshake_refused", peer=address, reason=str(exc))
                await trio.aclose_forcefully(tcp)
                return
            channel = settings.channel(stream, Role.RESPONDER, node_id, address)
            await run_handler(handler, channel)

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, accept, listeners)
            task_status.started(Address(self.advertise_hosts, port))

    async def dial(
        self,
        host: str,
        port: int,
        settings: ChannelSettings,
        *,
        deadline: float,
        expected_node_id: str | None = None,
    ) -> MessageChannel:
        return await dial_tcp(
            host,
            port,
            self.client_context,
            settings,
            deadline=deadline,
            expected_node_id=expected_node_id,
        )


async def dial_tcp(
    host: str,
    port: int,
    context: ssl.SSLContext,
    settings: ChannelSettings,
    *,
    deadline: float,
    expected_node_id: str | None = None,
) -> MessageChannel:
    """Connect, handshake, and check the peer's node id when known.

    Raises :class:`HandshakeError` or ``OSError`` (connection refused,
    unreachable), both naming the address.
    """
    address = f"{host}:{port}"
    try:
        with trio.fail_at(deadline):
            tcp = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise HandshakeError(f"{address}: no TCP connection in time") from None
    except OSError as exc:
        raise OSError(exc.errno, f"{address}: {exc.strerror or exc}") from None
    try:
        stream, node_id = await secure_stream(
            tcp,
            context,
            server_side=False,
            timeout_s=max(deadline - trio.current_time(), 0.0),
            expected_node_id=expected_node_id,
        )
    except HandshakeError as exc:
        await trio.aclose_forcefully(tcp)
        raise HandshakeError(f"{address}: {exc}") from None
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return settings.channel(stream, Role.INITIATOR, node_id, address)
