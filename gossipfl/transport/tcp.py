"""The daemon's network: TCP with TLS 1.3 and mutual authentication."""

from __future__ import annotations

import ssl

import trio

from gossipfl.transport.admission import Admission
from gossipfl.transport.channel import MessageChannel
from gossipfl.transport.identity import NodeIdentity
from gossipfl.transport.network import (
    Address,
    ChannelHandler,
    ChannelSettings,
    accept_channel,
    dialled_channel,
)
from gossipfl.transport.refusals import RefusalLog
from gossipfl.transport.tls import HandshakeError, tls_context


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
        self.refusals = RefusalLog(trio.current_time)
        self.admission = Admission(trio.current_time)

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
            await accept_channel(
                tcp,
                _address(tcp),
                settings,
                handler,
                context=self.server_context,
                refusals=self.refusals,
                admission=self.admission,
            )

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
    return await dialled_channel(
        tcp,
        address,
        settings,
        deadline=deadline,
        expected_node_id=expected_node_id,
        context=context,
    )
