"""Blame is in the type (as in h11): who broke the protocol?"""


class ProtocolError(Exception):
    """Base of the protocol's own errors."""


class LocalProtocolError(ProtocolError):
    """Our own code misused the protocol (sent a message the state does not
    allow, or an invalid field).  A bug here, never the peer's fault."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, oversized or out of order.  The
    message says what; the connection must be closed, nothing else."""
