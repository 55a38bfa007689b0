"""Helpers for in-process node tests: production nodes on a memory wire in
virtual time, a synthetic trainer of any size, and members that misbehave
on purpose."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from gossipfl.node.checkpoint import Checkpoint
from gossipfl.node.compute import InlineTrainerHost, Metrics
from gossipfl.node.config import parse_config
from gossipfl.node.engine import GossipNode, own_announcement
from gossipfl.node.partner import ExchangeTerms, greet
from gossipfl.node.state import MemoryStateStore
from gossipfl.topology.discovery import DiscoveryHub, InMemoryDiscovery
from gossipfl.transport import (
    Address,
    ChannelSettings,
    MemoryNetwork,
    MemoryWire,
    MessageChannel,
    NodeIdentity,
    Timeouts,
)
from simnet.swarm import in_process_node

Floats = npt.NDArray[np.float32]


class DriftTrainer:
    """Each step moves the model ``rate`` of the way to ``target``: fast,
    deterministic, any size.  ``rate=0`` never changes the model."""

    def __init__(self, dim: int, target: float, rate: float = 0.1) -> None:
        self.params = np.zeros(dim, dtype=np.float32)
        self.target = np.float32(target)
        self.rate = np.float32(rate)

    def get_params(self) -> Floats:
        return self.params.copy()

    def set_params(self, params: Floats) -> None:
        self.params[:] = params

    def train(self, steps: int) -> dict[str, float]:
        for _ in range(steps):
            self.params += self.rate * (self.target - self.params)
        return {"loss": float(np.abs(self.target - self.params).mean())}

    def evaluate(self) -> dict[str, float]:
        return {"loss": float(np.abs(self.params).mean())}


class RecordingHost(InlineTrainerHost):
    """An inline host that remembers when each training run started, the
    model it started from, and the sum of the changes of the runs that
    finished."""

    def __init__(self, trainer: DriftTrainer, *, step_cost_s: float) -> None:
        super().__init__(trainer, step_cost_s=step_cost_s)
        self.started: list[float] = []
        self.inputs: list[Floats] = []
        self.change = np.zeros_like(trainer.params, dtype=np.float64)

    async def train(self, params: Floats, steps: int) -> tuple[Metrics, Floats]:
        self.started.append(trio.current_time())
        self.inputs.append(params.copy())
        metrics, after = await super().train(params, steps)
        self.change += after.astype(np.float64) - params
        return metrics, after


def make_node(
    identity: NodeIdentity,
    wire: MemoryWire,
    hub: DiscoveryHub,
    *,
    name: str,
    dim: int = 64,
    target: float = 1.0,
    rate: float = 0.1,
    step_cost_s: float = 0.05,
    gossip: dict[str, Any] | None = None,
    start_from: Floats | None = None,
    tls: bool = True,
) -> GossipNode:
    """A production node named (and reachable at) ``name``, training a
    :class:`DriftTrainer`.  ``start_from``: restore from a checkpoint of
    that model (a node that has been running), instead of joining fresh."""
    config = parse_config(
        {"node": {"name": name}, "gossip": gossip or {}, "trainer": {"name": "drift"}}
    )
    host = RecordingHost(DriftTrainer(dim, target, rate), step_cost_s=step_cost_s)
    store = MemoryStateStore()
    node = in_process_node(config, identity, host, wire, hub, tls=tls, store=store)
    if start_from is not None:
        zero = np.zeros_like(start_from)
        store.last = Checkpoint(node.checkpoint_identity, identity.node_id, start_from, zero, {})
        node.restore()
    return node


Handler = Callable[[MessageChannel], Awaitable[None]]


class Member:
    """A swarm member we script by hand, on the same wire as real nodes."""

    def __init__(self, identity: NodeIdentity, wire: MemoryWire, hub: DiscoveryHub) -> None:
        self.identity = identity
        self.network = MemoryNetwork(wire, "member", identity)
        self.hub = hub
        self.settings = ChannelSettings(Timeouts(), 1 << 26)

    def terms(self, node: GossipNode) -> ExchangeTerms:
        """``node``'s terms, as this member would state them."""
        terms = node.participant.terms
        hello = dataclasses.replace(terms.hello, node_id=self.identity.node_id)
        return dataclasses.replace(terms, hello=hello)

    async def dial(
        self, node: GossipNode, *, greet_with: GossipNode | None = None
    ) -> MessageChannel:
        """A channel to ``node``, greeted unless ``greet_with`` is None."""
        assert node.address is not None
        channel = await self.network.dial(
            node.address.hosts[0],
            node.address.port,
            self.settings,
            deadline=trio.current_time() + 10,
        )
        if greet_with is not None:
            await greet(channel, self.terms(greet_with), deadline=trio.current_time() + 10)
        return channel

    async def serve(
        self, handler: Handler, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen with ``handler`` and announce ourselves to the hub."""
        async with trio.open_nursery() as nursery:
            address: Address = await nursery.start(self.network.serve, handler, self.settings)
            own = own_announcement(self.identity, address)
            events_in, _events = trio.open_memory_channel[Any](math.inf)
            await nursery.start(InMemoryDiscovery(self.hub, own).run, events_in)
            task_status.started()


@asynccontextmanager
async def running(*nodes: GossipNode) -> AsyncIterator[trio.Nursery]:
    """Run ``nodes`` for the block; stop them (final checkpoint, byes) after.
    They start a few ms apart, as real nodes do: nodes started in the same
    virtual instant would finish every step together and find each other
    busy every time."""
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
            await trio.sleep(0.0137)
        yield nursery
        nursery.cancel_scope.cancel()
