"""Throwaway swarms for transport tests: a CA, member nodes, an outsider
with its own CA, and an expired member."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trio
import trio.testing

from gossipfl.compress import TopKWithFeedback
from gossipfl.node.model import ModelState, model_hash
from gossipfl.node.partner import ExchangeTerms
from gossipfl.protocol import Hello, Role, Session
from gossipfl.transport import MessageChannel, NodeIdentity, Timeouts, secure_stream, tls_context
from gossipfl.transport.identity import (
    CA_CERT,
    CA_KEY,
    NODE_CERT,
    NODE_KEY,
    _cert_pem,
    init_swarm,
    issue_certificate,
    keygen,
    load_certificate,
    load_private_key,
)

MAX_FRAME = 1 << 20
DIM = 1000


@dataclass(frozen=True)
class Swarm:
    root: Path
    members: list[NodeIdentity]
    outsider: NodeIdentity  # signed by another CA
    expired: NodeIdentity  # signed by our CA, validity over


def make_swarm(root: Path, members: int = 3) -> Swarm:
    init_swarm(root / "swarm")
    nodes = []
    for i in range(members):
        keygen(root / "swarm", root / f"node{i}")
        nodes.append(NodeIdentity.from_dir(root / f"node{i}"))
    init_swarm(root / "other-swarm")
    keygen(root / "other-swarm", root / "outsider")
    outsider_dir = root / "outsider"
    # The outsider trusts our CA, so only its own certificate is wrong.
    outsider = NodeIdentity(
        outsider_dir / NODE_CERT,
        outsider_dir / NODE_KEY,
        root / "swarm" / CA_CERT,
        "outsider",
        "other",
    )
    expired_dir = root / "expired"
    keygen(root / "swarm", expired_dir)
    ca_key = load_private_key(root / "swarm" / CA_KEY)
    ca_cert = load_certificate(root / "swarm" / CA_CERT)
    key = load_private_key(expired_dir / NODE_KEY)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    old = issue_certificate(ca_key, ca_cert, key.public_key(), days=1, not_before=long_ago)
    (expired_dir / NODE_CERT).write_bytes(_cert_pem(old))
    expired = NodeIdentity(
        expired_dir / NODE_CERT,
        expired_dir / NODE_KEY,
        root / "swarm" / CA_CERT,
        "expired",
        "expired",
    )
    return Swarm(root, nodes, outsider, expired)


def hello_for(identity: NodeIdentity, params: np.ndarray, port: int = 0) -> Hello:
    return Hello(
        identity.node_id,
        identity.swarm_id,
        "digits-logreg",
        "topk-ef",
        "float32",
        params.size,
        model_hash(params),
        port,
    )


def model_and_terms(identity: NodeIdentity, seed: int = 0) -> tuple[ModelState, ExchangeTerms]:
    initial = np.random.default_rng(99).standard_normal(DIM).astype(np.float32)
    model = ModelState.initial(initial)
    model.params += np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    model.residual += np.random.default_rng(seed + 1).standard_normal(DIM).astype(np.float32)
    return model, ExchangeTerms(hello_for(identity, initial), TopKWithFeedback(), max_density=0.5)


async def tls_pair(
    client: NodeIdentity, server: NodeIdentity, timeouts: Timeouts | None = None
) -> tuple[MessageChannel, MessageChannel]:
    """Two handshaken channels over an in-memory stream (no sockets)."""
    timeouts = timeouts or Timeouts()
    left, right = trio.testing.memory_stream_pair()
    results: dict[str, tuple[trio.SSLStream[trio.abc.Stream], str]] = {}

    async def side(
        name: str, stream: trio.abc.Stream, identity: NodeIdentity, server_side: bool
    ) -> None:
        results[name] = await secure_stream(
            stream,
            tls_context(identity, server_side=server_side),
            server_side=server_side,
            timeout_s=timeouts.handshake,
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, "client", left, client, False)
        nursery.start_soon(side, "server", right, server, True)
    (c_stream, c_peer), (s_stream, s_peer) = results["client"], results["server"]
    return (
        MessageChannel(
            c_stream, Session(Role.INITIATOR, MAX_FRAME), c_peer[:12], timeouts, node_id=c_peer
        ),
        MessageChannel(
            s_stream, Session(Role.RESPONDER, MAX_FRAME), s_peer[:12], timeouts, node_id=s_peer
        ),
    )
