"""TLS 1.3 channels over trio streams, TCP listener and dialer, identities."""

from gossipfl.transport.channel import MessageChannel, PeerError, Timeouts, Traffic
from gossipfl.transport.identity import IdentityError, NodeIdentity
from gossipfl.transport.tcp import dial, serve
from gossipfl.transport.tls import HandshakeError, secure_stream, tls_context

__all__ = [
    "HandshakeError",
    "IdentityError",
    "MessageChannel",
    "NodeIdentity",
    "PeerError",
    "Timeouts",
    "Traffic",
    "dial",
    "secure_stream",
    "serve",
    "tls_context",
]
