"""Authenticated message channels and the networks that carry them: TLS 1.3
over TCP for the daemon, over memory streams in process; identities."""

from gossipfl.transport.channel import MessageChannel, PeerError, Timeouts, Traffic
from gossipfl.transport.identity import IdentityError, NodeIdentity
from gossipfl.transport.memory import MemoryNetwork, MemoryWire
from gossipfl.transport.network import (
    Address,
    ChannelHandler,
    ChannelSettings,
    Network,
    peer_label,
    run_handler,
)
from gossipfl.transport.tcp import TcpNetwork, dial_tcp
from gossipfl.transport.tls import HandshakeError, secure_stream, tls_context

__all__ = [
    "Address",
    "ChannelHandler",
    "ChannelSettings",
    "HandshakeError",
    "IdentityError",
    "MemoryNetwork",
    "MemoryWire",
    "MessageChannel",
    "Network",
    "NodeIdentity",
    "PeerError",
    "TcpNetwork",
    "Timeouts",
    "Traffic",
    "dial_tcp",
    "peer_label",
    "run_handler",
    "secure_stream",
    "tls_context",
]
