"""TLS 1.3 with mutual authentication against the swarm CA, over any
trio Stream.

Peers are identified by node id (hash of the certificate's public key), not
by host name, so host name checking is off and the node id is checked after
the handshake instead.
"""

from __future__ import annotations

import ssl

import trio

from gossipfl.transport.identity import NodeIdentity, node_id_of_der


class HandshakeError(Exception):
    """The TLS handshake failed or the peer is not who it should be."""


def tls_context(identity: NodeIdentity, *, server_side: bool) -> ssl.SSLContext:
    """A TLS 1.3-only context presenting ``identity`` and requiring a peer
    certificate signed by the same swarm CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(identity.cert_path, identity.key_path)
    context.load_verify_locations(cafile=str(identity.ca_path))
    if server_side:
        # No session resumption is used: session tickets would only be
        # bytes sent after every handshake (and delay the first reply).
        context.num_tickets = 0
    return context


def peer_node_id(stream: trio.SSLStream[trio.abc.Stream]) -> str:
    """The node id of the authenticated peer of a handshaken stream."""
    der = stream.getpeercert(binary_form=True)
    if not der:
        raise HandshakeError("peer presented no certificate")
    return node_id_of_der(der)


async def secure_stream(
    transport: trio.abc.Stream,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    timeout_s: float,
    expected_node_id: str | None = None,
) -> tuple[trio.SSLStream[trio.abc.Stream], str]:
    """Run the handshake over ``transport`` within ``timeout_s``.

    Returns the TLS stream and the peer's node id.  Raises
    :class:`HandshakeError` when the handshake fails, times out, or the peer
    is not ``expected_node_id``; the caller still owns ``transport`` then
    and closes it (after logging, so a log line is never late).
    """
    stream = trio.SSLStream(transport, context, server_side=server_side)
    try:
        with trio.fail_after(timeout_s):
            await stream.do_handshake()
        node_id = peer_node_id(stream)
    except trio.TooSlowError:
        raise HandshakeError(f"TLS handshake took longer than {timeout_s:g}s") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, ValueError) as exc:
        cause = (
            exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
        )
        raise HandshakeError(f"TLS handshake failed: {_reason(cause)}") from None
    if expected_node_id is not None and node_id != expected_node_id:
        raise HandshakeError(f"peer is node {node_id[:16]}…, expected {expected_node_id[:16]}…")
    return stream, node_id


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"{exc.reason}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__
