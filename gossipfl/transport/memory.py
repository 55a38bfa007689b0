"""An in-process network: nodes in one trio run, connected by memory streams.

A fake that ships with the product (like ``trio.testing``): tests and the
simulator run the production node over it, with no sockets and no threads,
so a whole swarm runs under ``trio.testing.MockClock``.  By default every
connection runs the real TLS 1.3 handshake with the nodes' certificates, so
authentication, node-id checks and the channel code are the daemon's own.
Without TLS the wire itself vouches for who dialled (faster, for large
simulations).
"""

from __future__ import annotations

import errno
import functools
import itertools
from dataclasses import dataclass

import trio
import trio.lowlevel
import trio.testing

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
from gossipfl.transport.tls import tls_context


@dataclass(frozen=True)
class _Incoming:
    stream: trio.abc.Stream
    node_id: str  # who dialled (trusted only without TLS)
    address: str  # the dialler's host, for logs


@dataclass
class _Listener:
    node_id: str
    inbox: trio.MemorySendChannel[_Incoming]


class MemoryWire:
    """What a set of :class:`MemoryNetwork` objects share: who listens at
    which ``(host, port)``.  :meth:`stream_pair` makes each connection's
    two ends; a subclass may put emulated links between them."""

    def __init__(self) -> None:
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._ports = itertools.count(40000)

    def listen(
        self, host: str, port: int, node_id: str
    ) -> tuple[int, trio.MemoryReceiveChannel[_Incoming]]:
        if port == 0:
            port = next(p for p in self._ports if (host, p) not in self._listeners)
        if (host, port) in self._listeners:
            raise OSError(errno.EADDRINUSE, f"{host}:{port}: address already in use")
        send, receive = trio.open_memory_channel[_Incoming](float("inf"))
        self._listeners[(host, port)] = _Listener(node_id, send)
        return port, receive

    def close(self, host: str, port: int) -> None:
        listener = self._listeners.pop((host, port), None)
        if listener is not None:
            listener.inbox.close()

    def connect(self, host: str, port: int, incoming: _Incoming) -> str:
        """Queue a connection at ``host:port``; returns the listener's node
        id.  Raises ``ConnectionRefusedError`` if nobody listens there."""
        listener = self._listeners.get((host, port))
        if listener is None:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"{host}:{port}: connection refused")
        listener.inbox.send_nowait(incoming)
        return listener.node_id

    def stream_pair(self, dialer: str, listener: str) -> tuple[trio.abc.Stream, trio.abc.Stream]:
        """The two ends of a new connection from host ``dialer`` to host
        ``listener``: (dialer's end, listener's end)."""
        return trio.testing.memory_stream_pair()

    async def reach(self, dialer: str, listener: str, deadline: float) -> None:
        """Wait what opening a connection from ``dialer`` to ``listener``
        takes (nothing here); raise ``OSError`` if it cannot be opened by
        ``deadline``."""
        await trio.lowlevel.checkpoint()


class MemoryNetwork:
    """One node's view of a :class:`MemoryWire`, at ``host``.

    With ``identity`` every connection runs the TLS 1.3 handshake with that
    node's certificate (contexts built once); with ``tls=False`` the wire
    reports who dialled and ``identity`` only supplies the node id.
    """

    def __init__(
        self,
        wire: MemoryWire,
        host: str,
        identity: NodeIdentity,
        *,
        port: int = 7000,
        tls: bool = True,
    ) -> None:
        self.wire = wire
        self.host = host
        self.port = port
        self.node_id = identity.node_id
        self.tls = tls
        self.client_context = tls_context(identity, server_side=False) if tls else None
        self.server_context = tls_context(identity, server_side=True) if tls else None
        self.refusals = RefusalLog(trio.current_time)

    async def serve(
        self,
        handler: ChannelHandler,
        settings: ChannelSettings,
        *,
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        port, inbox = self.wire.listen(self.host, self.port, self.node_id)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(Address((self.host,), port))
                async for incoming in inbox:
                    nursery.start_soon(
                        functools.partial(
                            accept_channel,
                            incoming.stream,
                            incoming.address,
                            settings,
                            handler,
                            context=self.server_context,
                            node_id=incoming.node_id,
                            refusals=self.refusals,
                        )
                    )
        finally:
            self.wire.close(self.host, port)

    async def dial(
        self,
        host: str,
        port: int,
        settings: ChannelSettings,
        *,
        deadline: float,
        expected_node_id: str | None = None,
    ) -> MessageChannel:
        address = f"{host}:{port}"
        await self.wire.reach(self.host, host, deadline)
        ours, theirs = self.wire.stream_pair(self.host, host)
        try:
            listener_id = self.wire.connect(host, port, _Incoming(theirs, self.node_id, self.host))
        except (OSError, trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"{address}: connection refused"
            ) from None
        return await dialled_channel(
            ours,
            address,
            settings,
            deadline=deadline,
            expected_node_id=expected_node_id,
            context=self.client_context,
            node_id=listener_id,
        )
