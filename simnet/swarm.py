"""An in-process swarm: N production :class:`GossipNode` objects in one trio
run, in virtual time.

Each node is the daemon's own engine with the in-process seams: a
:class:`~gossipfl.transport.MemoryNetwork` (real TLS 1.3 over memory
streams unless ``tls=False``), an :class:`~gossipfl.node.compute.InlineTrainerHost`
that charges ``step_cost_s / speed`` of virtual time per local step, a
:class:`~gossipfl.node.state.MemoryStateStore`, and
:class:`~gossipfl.topology.InMemoryDiscovery`.  The clock is a
:class:`~simnet.clock.EventClock`: nothing sleeps for real, no socket or
thread is opened.

Reproducible: node keys (hence node ids, hence every node's generator) are
derived from ``seed``, trainers partition their data from it, and trio's
scheduler is seeded with it (:mod:`simnet.determinism`).  Two runs of one
spec give bit-identical models and counters.

Links are ideal here (no latency, no bandwidth limit): exchanges take no
virtual time.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trio
from cryptography.hazmat.primitives.asymmetric import ed25519

from gossipfl.compress.codec import FloatArray
from gossipfl.node.compute import InlineTrainerHost, TrainerHost
from gossipfl.node.config import Config, parse_config
from gossipfl.node.engine import GossipNode
from gossipfl.node.state import MemoryStateStore
from gossipfl.topology.discovery import DiscoveryHub, InMemoryDiscovery
from gossipfl.trainers import Trainer
from gossipfl.transport import MemoryNetwork, MemoryWire, NodeIdentity
from gossipfl.transport.identity import (
    CA_CERT,
    NODE_CERT,
    NODE_KEY,
    init_swarm,
    keygen,
    spki_sha256,
)
from simnet.clock import EventClock
from simnet.determinism import seeded_scheduler
from simnet.rounds import node_trainer


@dataclass(frozen=True)
class SwarmSpec:
    """One in-process run.  ``gossip`` overrides keys of ``[gossip]``."""

    peers: int = 16
    trainer: str = "digits-logreg"
    trainer_options: dict[str, Any] = field(
        default_factory=lambda: {"partition": "dirichlet", "alpha": 0.5}
    )
    gossip: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 60.0  # virtual seconds
    step_cost_s: float = 0.05  # virtual seconds per local step at speed 1
    speeds: tuple[float, ...] = ()  # per node; empty: all 1.0
    seed: int = 0
    tls: bool = True

    def speed(self, index: int) -> float:
        return self.speeds[index] if self.speeds else 1.0


@dataclass(frozen=True)
class NodeResult:
    name: str
    node_id: str
    params: FloatArray
    counters: dict[str, int]
    bytes_sent: int
    bytes_received: int
    accuracy: float  # of the final model, on the shared test set


@dataclass(frozen=True)
class SwarmResult:
    spec: SwarmSpec
    nodes: list[NodeResult]
    virtual_time_s: float
    wall_time_s: float


def node_key(seed: int, index: int) -> ed25519.Ed25519PrivateKey:
    """Node ``index``'s key in a run of ``seed``."""
    digest = hashlib.sha256(f"gossipfl-simnet/{seed}/{index}".encode()).digest()
    return ed25519.Ed25519PrivateKey.from_private_bytes(digest)


def make_identities(root: Path, count: int, seed: int, *, files: bool = True) -> list[NodeIdentity]:
    """A throwaway swarm CA in ``root`` and ``count`` member identities whose
    keys derive from ``seed``.  ``files=False``: the node ids only, with no
    key or certificate written (a run without TLS reads none; a thousand
    nodes' files cost a second)."""
    swarm_id = init_swarm(root / "swarm")
    identities = []
    for i in range(count):
        node_dir = root / f"node{i}"
        if files:
            keygen(root / "swarm", node_dir, key=node_key(seed, i), durable=False)
            identities.append(NodeIdentity.from_dir(node_dir))
            continue
        node_id = spki_sha256(node_key(seed, i).public_key()).hex()
        identities.append(
            NodeIdentity(
                node_dir / NODE_CERT,
                node_dir / NODE_KEY,
                root / "swarm" / CA_CERT,
                node_id,
                swarm_id,
            )
        )
    return identities


def node_config(spec: SwarmSpec, index: int) -> Config:
    """Node ``index``'s config: the defaults, with the spec's ``[gossip]``
    overrides, validated like a file (errors name the key)."""
    return parse_config(
        {
            "node": {"name": f"node{index}"},
            "swarm": {"seed": spec.seed},
            "gossip": dict(spec.gossip),
            "trainer": {"name": spec.trainer, **spec.trainer_options},
        }
    )


def build_trainer(spec: SwarmSpec, index: int) -> Trainer:
    return node_trainer(spec.trainer, spec.trainer_options, spec.seed, index, spec.peers)


def local_only_accuracy(spec: SwarmSpec, index: int, steps: int) -> float:
    """Node ``index``'s trainer trained alone on its own data for ``steps``."""
    trainer = build_trainer(spec, index)
    trainer.train(steps)
    return trainer.evaluate()["accuracy"]


def in_process_node(
    config: Config,
    identity: NodeIdentity,
    trainer: TrainerHost,
    wire: MemoryWire,
    hub: DiscoveryHub,
    *,
    tls: bool = True,
    store: MemoryStateStore | None = None,
) -> GossipNode:
    """The production node with in-process seams, at host ``config.node.name``."""
    return GossipNode(
        config,
        identity,
        trainer,
        network=MemoryNetwork(wire, config.node.name, identity, tls=tls),
        store=store or MemoryStateStore(),
        discovery=lambda own: InMemoryDiscovery(hub, own),
    )


def start_times(spec: SwarmSpec) -> list[tuple[int, float]]:
    """(node index, seconds after the start) for every node, in start order.

    Nodes start at seeded random moments within the first local step: real
    devices never start in the same instant, and nodes that did would
    finish every step together and find every partner busy.
    """
    rng = np.random.default_rng([spec.seed, 0x57A27])
    offsets = rng.uniform(0.0, spec.step_cost_s, spec.peers)
    return sorted(enumerate(offsets.tolist()), key=lambda item: item[1])


class InProcessSwarm:
    """The nodes of one spec, built and ready to run in a trio run."""

    def __init__(self, spec: SwarmSpec, identities: list[NodeIdentity]) -> None:
        self.spec = spec
        self.wire = MemoryWire()
        self.hub = DiscoveryHub()
        self.trainers = [build_trainer(spec, i) for i in range(spec.peers)]
        self.nodes = [self.build_node(i, identities[i]) for i in range(spec.peers)]

    def build_node(self, index: int, identity: NodeIdentity) -> GossipNode:
        spec = self.spec
        host = InlineTrainerHost(
            self.trainers[index], step_cost_s=spec.step_cost_s, speed=spec.speed(index)
        )
        return in_process_node(
            node_config(spec, index), identity, host, self.wire, self.hub, tls=spec.tls
        )

    async def run(self, duration_s: float) -> None:
        """Start every node (at :func:`start_times`), let them gossip for
        ``duration_s``, stop them (each writes its final checkpoint and
        says bye)."""
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index, offset in start_times(self.spec):
                await trio.sleep_until(start + offset)
                await nursery.start(self.nodes[index].run)
            await trio.sleep_until(start + duration_s)
            nursery.cancel_scope.cancel()

    def results(self) -> list[NodeResult]:
        results = []
        for node, trainer in zip(self.nodes, self.trainers, strict=True):
            trainer.set_params(node.model.params)
            results.append(
                NodeResult(
                    node.config.node.name,
                    node.identity.node_id,
                    node.model.params.copy(),
                    asdict(node.counters),
                    node.settings.traffic.sent,
                    node.settings.traffic.received,
                    trainer.evaluate()["accuracy"],
                )
            )
        return results


def run_swarm(spec: SwarmSpec, workdir: Path | None = None) -> SwarmResult:
    """Run ``spec`` to its end in virtual time.  Identities go to
    ``workdir`` (default: a temporary folder, removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="gossipfl-swarm-") as tmp:
        identities = make_identities(workdir or Path(tmp), spec.peers, spec.seed)
        swarm = InProcessSwarm(spec, identities)
        clock = EventClock()
        # Wall time is what this run cost us, reported next to the virtual
        # time it simulated; no node ever sees it.
        started = time.perf_counter()
        with seeded_scheduler(spec.seed):
            trio.run(swarm.run, spec.duration_s, clock=clock)
        wall = time.perf_counter() - started
        return SwarmResult(spec, swarm.results(), clock.current_time(), wall)


def mean_accuracy(result: SwarmResult) -> float:
    return float(np.mean([n.accuracy for n in result.nodes]))
