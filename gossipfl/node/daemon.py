"""The gossip node: one trio nursery running the listener (responder side),
discovery, the gossip loop (train, pick a partner, exchange) and the
checkpoint timer, plus a control socket for ``gossipfl status``.

Time is read only through trio, and compute goes through an injected
runner (a worker thread in the daemon; inline with charged virtual time in
a simulator), so the same node runs under a mock clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import structlog
import trio

from gossipfl.compress import exchange_k, value_size
from gossipfl.node.checkpoint import Checkpoint, Identity, load_checkpoint, save_checkpoint
from gossipfl.node.config import Config
from gossipfl.node.model import ModelState, model_hash
from gossipfl.node.partner import ExchangeTerms, greet, initiate, pull_model, respond
from gossipfl.plugins import load_compressor, load_selector
from gossipfl.protocol import PROTOCOL_VERSION, Bye, Hello
from gossipfl.topology.discovery import Announcement, Discovery, Joined, unbounded_channel
from gossipfl.topology.peers import Peer, PeerTable
from gossipfl.trainers import Trainer
from gossipfl.transport import (
    HandshakeError,
    MessageChannel,
    NodeIdentity,
    PeerError,
    Timeouts,
    Traffic,
    dial,
    serve,
    tls_context,
)

T = TypeVar("T")
ComputeRunner = Callable[[Callable[[], T]], Awaitable[T]]
DiscoveryFactory = Callable[[Announcement], Discovery]
log = structlog.get_logger("gossipfl.node")
CONTROL_SOCKET = "control.sock"
_JOIN_WAIT_S = 3.0  # how long a fresh node waits for a peer to pull a model from
_CANDIDATES = 3  # partners tried per round before giving up on it


async def in_worker_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn)


@dataclass
class Counters:
    rounds: int = 0
    steps: int = 0
    exchanges: int = 0  # initiated and merged
    responded: int = 0  # merged as responder
    failed_exchanges: int = 0
    busy: int = 0
    checkpoints: int = 0


@dataclass
class NodeStatus:
    node_id: str
    name: str
    uptime_s: float
    counters: dict[str, int]
    bytes_sent: int
    bytes_received: int
    metrics: dict[str, float]
    peers: list[dict[str, Any]] = field(default_factory=list)


class GossipNode:
    def __init__(
        self,
        config: Config,
        identity: NodeIdentity,
        trainer: Trainer,
        *,
        discovery: DiscoveryFactory | None = None,
        compute: ComputeRunner[Any] = in_worker_thread,
    ) -> None:
        self.config = config
        self.identity = identity
        self.trainer = trainer
        self.discovery = discovery
        self.compute = compute
        initial = trainer.get_params()
        self.initial_hash = model_hash(initial)
        self.model = ModelState.initial(initial)
        self.counters = Counters()
        self.traffic = Traffic()
        self.table = PeerTable(identity.node_id)
        self.compressor = load_compressor(config.gossip.compressor)
        self.selector = load_selector(
            config.gossip.selector, max_staleness=config.gossip.max_staleness
        )
        self.rng = np.random.default_rng([config.swarm.seed, int(identity.node_id[:15], 16)])
        self.channels: dict[str, MessageChannel] = {}
        self.metrics: dict[str, float] = {}
        self.restored = False
        self.port = 0
        self._xid = 0
        self._started = 0.0
        self.timeouts = Timeouts(
            idle=config.gossip.idle_timeout_s,
            read=config.gossip.read_timeout_s,
            write=config.gossip.read_timeout_s,
            handshake=config.gossip.connect_timeout_s,
        )
        self.max_frame_bytes = config.gossip.max_frame_bytes or self.model.dim * 4 + (1 << 16)
        self.terms = self._terms(0)

    # -- identity and state -------------------------------------------------------------

    def _terms(self, port: int) -> ExchangeTerms:
        hello = Hello(
            self.identity.node_id,
            self.identity.swarm_id,
            self.config.trainer_name,
            self.config.gossip.compressor,
            self.model.dim,
            self.initial_hash,
            port,
        )
        dtype = cast(Any, self.config.gossip.value_dtype)
        return ExchangeTerms(hello, self.compressor, dtype)

    @property
    def checkpoint_identity(self) -> Identity:
        return Identity(
            self.identity.swarm_id,
            self.config.trainer_name,
            self.model.dim,
            self.initial_hash.hex(),
        )

    def restore(self) -> bool:
        """Load the checkpoint in ``state_dir`` if there is one; raises
        :class:`~gossipfl.node.checkpoint.CheckpointError` for a bad one."""
        found = load_checkpoint(self.config.node.state_dir, self.checkpoint_identity)
        if found is None:
            return False
        self.model.replace(found.params, found.residual)
        for key, value in found.counters.items():
            if hasattr(self.counters, key):
                setattr(self.counters, key, value)
        self.trainer.set_params(self.model.params)
        self.restored = True
        log.info(
            "checkpoint_restored", rounds=self.counters.rounds, exchanges=self.counters.exchanges
        )
        return True

    def checkpoint(self) -> Path:
        self.counters.checkpoints += 1
        snapshot = Checkpoint(
            self.checkpoint_identity,
            self.identity.node_id,
            self.model.params.copy(),
            self.model.residual.copy(),
            asdict(self.counters),
        )
        return save_checkpoint(self.config.node.state_dir, snapshot)

    def status(self) -> NodeStatus:
        now = trio.current_time()
        peers = [
            {
                "node_id": p.node_id,
                "address": p.address,
                "present": p.present,
                "live": p.live(now),
                "bandwidth_Bps": p.link.bandwidth if p.link.known else None,
                "rtt_s": p.link.rtt,
                "last_exchange_ago_s": None if p.last_exchange is None else now - p.last_exchange,
                "failures": p.failures,
            }
            for p in self.table.all()
        ]
        return NodeStatus(
            self.identity.node_id,
            self.config.node.name,
            now - self._started,
            asdict(self.counters),
            self.traffic.sent,
            self.traffic.received,
            dict(self.metrics),
            peers,
        )

    # -- the nursery ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; then write a final checkpoint and leave."""
        self._started = trio.current_time()
        host = self.config.listen_host
        listeners = await trio.open_tcp_listeners(self.config.listen_port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        self.terms = self._terms(self.port)
        try:
            async with trio.open_nursery() as nursery:
                server_ctx = tls_context(self.identity, server_side=True)
                nursery.start_soon(self._serve, listeners, server_ctx)
                if self.discovery is not None:
                    advertise = self.config.node.advertise_host or (
                        host if host != "0.0.0.0" else "127.0.0.1"
                    )
                    own = Announcement(
                        self.identity.node_id,
                        self.identity.swarm_id,
                        PROTOCOL_VERSION,
                        advertise,
                        self.port,
                    )
                    events_in, events = unbounded_channel()
                    await nursery.start(self.discovery(own).run, events_in)
                    nursery.start_soon(self._follow_discovery, events)
                nursery.start_soon(self._checkpoint_loop)
                await nursery.start(self._control_socket)
                log.info("node_started", port=self.port, dim=self.model.dim, restored=self.restored)
                task_status.started(self.port)
                await self._gossip_loop()
        finally:
            with trio.CancelScope(shield=True):
                path = self.checkpoint()
                for channel in list(self.channels.values()):
                    with trio.move_on_after(1):
                        await _say_bye(channel, "node stopping")
                log.info("node_stopped", checkpoint=str(path), **asdict(self.counters))

    async def _serve(self, listeners: list[trio.SocketListener], context: Any) -> None:
        await serve(
            listeners,
            context,
            self._respond,
            timeouts=self.timeouts,
            max_frame_bytes=self.max_frame_bytes,
            traffic=self.traffic,
        )

    async def _respond(self, channel: MessageChannel) -> None:
        # A misbehaving peer is logged by its channel and affects only it.
        with contextlib.suppress(PeerError):
            await respond(channel, self.model, self.terms)

    async def _follow_discovery(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for event in events:
            now = trio.current_time()
            if isinstance(event, Joined):
                peer = event.peer
                self.table.announced(
                    peer.node_id,
                    peer.host,
                    peer.port,
                    peer.swarm_id,
                    peer.protocol_version,
                    now,
                    self.counters.rounds,
                )
                log.info(
                    "peer_discovered", peer=peer.node_id[:12], address=f"{peer.host}:{peer.port}"
                )
            else:
                self.table.withdrawn(event.node_id)
                channel = self.channels.pop(event.node_id, None)
                if channel is not None:
                    await channel.aclose()
                log.info("peer_left", peer=event.node_id[:12])

    async def _checkpoint_loop(self) -> None:
        while True:
            await trio.sleep(self.config.gossip.checkpoint_every_s)
            await trio.to_thread.run_sync(self.checkpoint)

    async def _control_socket(self, *, task_status: trio.TaskStatus[None]) -> None:
        state_dir = self.config.node.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / CONTROL_SOCKET
        if path.exists():
            path.unlink()
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(8)
        listener = trio.SocketListener(sock)
        task_status.started()
        try:
            async with listener:
                while True:
                    stream = await listener.accept()
                    async with stream:
                        payload = json.dumps(asdict(self.status())).encode() + b"\n"
                        with trio.move_on_after(2):
                            await stream.send_all(payload)
        finally:
            path.unlink(missing_ok=True)

    # -- the gossip loop -----------------------------------------------------------------

    async def _gossip_loop(self) -> None:
        if not self.restored:
            await self._join()
        next_eval = trio.current_time()
        while True:
            await self._train_round()
            await self._exchange_round()
            self.counters.rounds += 1
            if trio.current_time() >= next_eval:
                await self._evaluate()
                next_eval = trio.current_time() + self.config.gossip.evaluate_every_s
            if self.config.gossip.round_interval_s:
                await trio.sleep(self.config.gossip.round_interval_s)
            else:
                await trio.sleep(0)

    async def _join(self) -> None:
        """A fresh node pulls one full model from its first partner, if one
        shows up within a few seconds, rather than starting from scratch."""
        with trio.move_on_after(_JOIN_WAIT_S):
            while not self.table.live(trio.current_time()):
                await trio.sleep(0.1)
        for peer in self.table.live(trio.current_time())[:_CANDIDATES]:
            try:
                channel = await self._channel(peer)
                params = await pull_model(channel, self.model.dim)
            except (PeerError, HandshakeError, OSError) as exc:
                await self._drop(peer, str(exc))
                continue
            if params is not None:
                self.model.replace(params)
                self.trainer.set_params(params)
                log.info("model_pulled", peer=peer.node_id[:12])
                return

    async def _train_round(self) -> None:
        before = self.model.params
        steps = self.config.gossip.local_steps
        trainer = self.trainer

        def work() -> tuple[dict[str, float], np.ndarray]:
            trainer.set_params(before)
            metrics = trainer.train(steps)
            return metrics, trainer.get_params()

        metrics, after = await self.compute(work)
        self.model.trained(before, after)
        self.counters.responded += self.model.apply_pending()
        self.counters.steps += steps
        self.metrics.update({f"train_{k}": v for k, v in metrics.items()})

    async def _evaluate(self) -> None:
        params, trainer = self.model.params.copy(), self.trainer

        def work() -> dict[str, float]:
            trainer.set_params(params)
            return trainer.evaluate()

        self.metrics.update(await self.compute(work))
        log.info(
            "evaluated",
            rounds=self.counters.rounds,
            exchanges=self.counters.exchanges,
            **self.metrics,
        )

    async def _exchange_round(self) -> None:
        if self.model.busy():
            return  # answering a peer right now: one exchange at a time; next round
        now = trio.current_time()
        ranked = self.selector.rank(self.table.live(now), self.counters.rounds, self.rng)
        for peer in ranked[:_CANDIDATES]:
            try:
                channel = await self._channel(peer)
                bandwidth = peer.link.bandwidth if peer.link.known else None
                k = exchange_k(
                    self.compressor,
                    self.model.dim,
                    self.config.gossip.density,
                    value_size(self.terms.value_dtype),
                    bandwidth,
                    self.config.gossip.exchange_budget_s,
                )
                if self.model.busy():
                    return  # a peer started an exchange with us while we dialled
                self._xid += 1
                sent, received, start = (
                    channel.bytes_sent,
                    channel.bytes_received,
                    trio.current_time(),
                )
                result = await initiate(
                    channel, self.model, self.terms, k=k, xid=self._xid, rng=self.rng
                )
            except (PeerError, HandshakeError, OSError) as exc:
                await self._drop(peer, str(exc))
                self.counters.failed_exchanges += 1
                continue
            end = trio.current_time()
            if result.busy_retry_s is not None:
                # Jitter: two nodes that keep initiating toward each other at
                # the same moment would otherwise collide forever.
                retry = result.busy_retry_s * self.rng.uniform(0.5, 1.5)
                self.table.busy(peer.node_id, end, retry)
                self.counters.busy += 1
                continue
            elapsed = max(end - start, 1e-6)
            self.table.succeeded(
                peer.node_id,
                end,
                self.counters.rounds,
                sent=(channel.bytes_sent - sent, elapsed),
                received=(channel.bytes_received - received, elapsed),
            )
            self.counters.exchanges += 1
            return

    async def _channel(self, peer: Peer) -> MessageChannel:
        channel = self.channels.get(peer.node_id)
        if channel is not None and not channel.closed:
            return channel
        channel = await dial(
            peer.host,
            peer.port,
            tls_context(self.identity, server_side=False),
            timeouts=self.timeouts,
            max_frame_bytes=self.max_frame_bytes,
            expected_node_id=peer.node_id,
            traffic=self.traffic,
        )
        await greet(channel, self.terms)
        self.channels[peer.node_id] = channel
        return channel

    async def _drop(self, peer: Peer, reason: str) -> None:
        log.warning("exchange_failed", peer=peer.node_id[:12], address=peer.address, reason=reason)
        self.table.failed(peer.node_id, trio.current_time())
        channel = self.channels.pop(peer.node_id, None)
        if channel is not None:
            await channel.aclose()


async def _say_bye(channel: MessageChannel, reason: str) -> None:
    with contextlib.suppress(Exception):  # best effort on the way out
        if not channel.closed:
            await channel.send(Bye(reason))
    await channel.aclose()


def read_status(state_dir: Path, timeout_s: float = 5.0) -> dict[str, Any]:
    """Ask the daemon whose state is in ``state_dir`` for its status."""
    path = state_dir / CONTROL_SOCKET
    if not path.exists():
        raise FileNotFoundError(f"no running daemon: {path} does not exist")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except ConnectionRefusedError:
            raise FileNotFoundError(f"no daemon answers on {path} (stale socket?)") from None
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data: dict[str, Any] = json.loads(b"".join(chunks))
    return data
