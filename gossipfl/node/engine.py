"""The gossip node: one engine for the daemon, in-process swarms and simnet.

A :class:`GossipNode` runs, in one trio nursery: the responder side (a
:class:`~gossipfl.transport.network.Network` hands it authenticated
channels), discovery, the gossip loop (train, pick a partner, exchange),
checkpoints and the status endpoint.  What differs between the daemon and
a simulation is injected, never branched on:

* *network* -- TCP + TLS in the daemon; memory streams (TLS by default) in
  process;
* *compute* -- a :class:`~gossipfl.node.compute.TrainerHost`: a worker
  thread in the daemon; inline with its cost charged on the clock in process;
* *state* -- a :class:`~gossipfl.node.state.StateStore`: files and a control
  socket in the daemon; memory in process.

Time is read only through trio and randomness comes from the node's seeded
generator, so a swarm under ``trio.testing.MockClock`` is reproducible.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Final, cast

import numpy as np
import structlog
import trio

from gossipfl.compress import Compressor, exchange_k, value_size
from gossipfl.node.bounds import ValueBound
from gossipfl.node.checkpoint import Checkpoint, CheckpointError, Identity
from gossipfl.node.compute import TrainerHost
from gossipfl.node.config import Config, ConfigError
from gossipfl.node.deadlines import DeadlinePolicy
from gossipfl.node.dialled import UNPROVEN_HANDSHAKE_S, DialledChannels
from gossipfl.node.model import ModelState, NonFiniteError, model_hash
from gossipfl.node.partner import (
    SMALL_MESSAGE,
    ExchangeTerms,
    Outcome,
    Participant,
    greet,
    initiate,
    pull_model,
    respond,
)
from gossipfl.node.penalties import Penalties
from gossipfl.node.state import Counters, NodeStatus, StateStore
from gossipfl.node.unproven import UnprovenBudget
from gossipfl.plugins import PluginError, load_compressor, load_selector, wire_name
from gossipfl.protocol import PROTOCOL_VERSION, Hello
from gossipfl.topology.discovery import (
    Announcement,
    Discovery,
    Joined,
    SeedIsSelfError,
    unbounded_channel,
)
from gossipfl.topology.links import LinkEstimate
from gossipfl.topology.peer_sample import SampleError, SharedPeer, decode_sample, encode_sample
from gossipfl.topology.peers import Peer, PeerTable, Withdrawal
from gossipfl.topology.selectors import Selector
from gossipfl.transport import (
    Address,
    ChannelSettings,
    HandshakeError,
    MessageChannel,
    Network,
    NodeIdentity,
    PeerError,
    Timeouts,
)
from gossipfl.transport.refusals import LineThrottle

DiscoveryFactory = Callable[[Announcement], Discovery]
log = structlog.get_logger("gossipfl.node")
JOIN_WAIT_S: Final = 3.0  # how long a fresh node waits for a peer to pull a model from
CANDIDATES: Final = 3  # partners tried per round at most
# Peers a round chooses among: all of them up to this many, else a fresh
# random sample of this many (ranking every peer of a swarm of thousands,
# every round, would cost more than the exchange).
CONSIDERED: Final = 128
# Discovery events are taken in batches at most this often: a swarm that
# starts together announces n peers to each of n nodes, and a wake-up per
# announcement would cost more than the announcements.
DISCOVERY_BATCH_S: Final = 0.05
# What a failed contact looks like; anything else is a bug on our side.
CONTACT_ERRORS: Final = (PeerError, HandshakeError, OSError)
_FRAME_OVERHEAD: Final = 4096  # msgpack map, field names, xid: far less than this
UNPROVEN_LOG_EVERY_S: Final = 60.0  # "over budget" is logged at most this often
# Our hello's sample of proven peers (peer exchange) is drawn anew at most
# this often: each draw looks at a few dozen table entries.
PEER_SAMPLE_EVERY_S: Final = 10.0
# A round with no partner to try waits this long at most (see _exchange_round).
ALONE_WAIT_S: Final = 1.0


def frame_bytes_needed(dim: int, compressor: Compressor) -> int:
    """The largest frame a node of ``dim`` coordinates must accept: a full
    float32 model (a late joiner's pull), or a dense exchange with every
    index, whichever is larger."""
    index_bytes = max(math.ceil(dim / 8) + 16, math.ceil(compressor.index_bytes(dim, dim)))
    return value_size("float32") * dim + index_bytes + _FRAME_OVERHEAD


class GossipNode:
    def __init__(
        self,
        config: Config,
        identity: NodeIdentity,
        trainer: TrainerHost,
        *,
        network: Network,
        store: StateStore,
        discovery: DiscoveryFactory | None = None,
        selector: Selector | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.trainer = trainer
        self.network = network
        self.store = store
        self.discovery = discovery
        initial = trainer.initial_params()
        self.initial_hash = model_hash(initial)
        self.model = ModelState.initial(initial)
        self.model.ready = False  # until restored or joined
        self.counters = Counters()
        gossip = config.gossip
        self.compressor = load_compressor(gossip.compressor)
        exchange_bytes = self._exchange_bytes()
        self.table = PeerTable(
            identity.node_id, exchange_bytes=exchange_bytes, max_peers=config.discovery.max_peers
        )
        # ``selector`` replaces the configured one (a simulator's reference).
        self.selector = selector or _node_selector(config, exchange_bytes)
        self.rng = np.random.default_rng([config.swarm.seed, int(identity.node_id[:15], 16)])
        self.settings = ChannelSettings(
            Timeouts(
                idle=gossip.idle_timeout_s,
                read=gossip.read_timeout_s,
                write=gossip.read_timeout_s,
                handshake=gossip.connect_timeout_s,
            ),
            _frame_limit(config, self.model.dim, self.compressor),
        )
        self.deadlines = DeadlinePolicy(
            cap_s=gossip.exchange_timeout_s, floor_s=min(2.0, gossip.exchange_timeout_s)
        )
        self.participant = Participant(
            self.model,
            self._terms(0),
            link_of=self._link_of,
            met=self._met,
            measured=self.table.measured,
            merged=self._merged,
            sample_for=self._sample_for,
            told=self._told,
        )
        self.channels = DialledChannels(
            network, self.settings, self.participant, connected=self.table.connected
        )
        self.metrics: dict[str, float] = {}
        # Seconds of trio time spent in each part of the loop.
        self.time_spent = {"training": 0.0, "exchanging": 0.0}
        self.restored = False
        self.address: Address | None = None
        self._xid = 0
        self._started = 0.0
        self._task: trio.lowlevel.Task | None = None  # the one running run()
        self._peer_seen = trio.Event()
        self._sample_due = 0.0  # when to draw the next peer sample for our hello
        self._sample_sent: dict[str, float] = {}  # peer -> when to send it ours again
        # A line a minute per peer, at most, for what peers tell us.
        self._bad_samples = LineThrottle(trio.current_time)
        self._learned_lines = LineThrottle(trio.current_time)
        self._checking: set[str] = set()  # peers being asked whether they left
        # Time lost to peers only an announcement vouches for (unproven.py).
        self.unproven = UnprovenBudget(trio.current_time)
        self._unproven_logged: float | None = None
        self.penalties = Penalties(trio.current_time)  # partners that stalled us

    def _exchange_bytes(self) -> int:
        """Bytes both ways of an exchange at the configured density."""
        gossip, dim = self.config.gossip, self.model.dim
        k = max(1, int(gossip.density * dim))
        index = math.ceil(self.compressor.index_bytes(dim, k))
        return index + 2 * k * value_size(cast(Any, gossip.value_dtype)) + 2 * SMALL_MESSAGE

    # -- identity and state -------------------------------------------------------------

    def _terms(self, port: int) -> ExchangeTerms:
        gossip = self.config.gossip
        hello = Hello(
            self.identity.node_id,
            self.identity.swarm_id,
            self.config.trainer_name,
            wire_name(self.compressor),
            gossip.value_dtype,
            self.model.dim,
            self.initial_hash,
            port,
            self.table.capacity() or 0.0,
        )
        dtype = cast(Any, gossip.value_dtype)
        bound = ValueBound(gossip.max_value_ratio, gossip.value_floor)
        return ExchangeTerms(hello, self.compressor, dtype, deadlines=self.deadlines, bound=bound)

    @property
    def checkpoint_identity(self) -> Identity:
        return Identity(
            self.identity.swarm_id,
            self.config.trainer_name,
            self.model.dim,
            self.initial_hash.hex(),
        )

    def restore(self) -> bool:
        """Adopt the store's last checkpoint if there is one; raises
        :class:`~gossipfl.node.checkpoint.CheckpointError` for a bad one."""
        found = self.store.load(self.checkpoint_identity)
        if found is None:
            return False
        self.model.replace(found.params, found.residual)
        self.model.ready = True
        for key, value in found.counters.items():
            if hasattr(self.counters, key):
                setattr(self.counters, key, value)
        self.restored = True
        log.info(
            "checkpoint_restored", rounds=self.counters.rounds, exchanges=self.counters.exchanges
        )
        return True

    def snapshot(self) -> Checkpoint:
        """The node's state at this instant (taken on the trio thread, so no
        merge can land halfway through the copy)."""
        params, residual = self.model.snapshot()
        return Checkpoint(
            self.checkpoint_identity, self.identity.node_id, params, residual, asdict(self.counters)
        )

    async def checkpoint(self) -> bool:
        """Save a snapshot; a failure (disk full, ...) is logged, not fatal:
        the previous checkpoint stands and the node goes on."""
        self.counters.checkpoints += 1
        try:
            await self.store.save(self.snapshot())
        except (OSError, CheckpointError) as exc:
            self.counters.checkpoints -= 1
            log.error("checkpoint_failed", reason=str(exc))
            return False
        return True

    def status(self) -> NodeStatus:
        now = trio.current_time()
        peers = [
            {
                "node_id": p.node_id,
                "address": p.address,
                "present": p.present,
                "live": p.live(now),
                "bandwidth_Bps": p.link.bandwidth if p.link.known else None,
                "rtt_s": p.link.rtt if p.link.measured else None,
                "exchanges": p.exchanges,
                "last_exchange_ago_s": None if p.last_exchange is None else now - p.last_exchange,
                "failures": p.failures,
            }
            for p in self.table.all()
        ]
        return NodeStatus(
            self.identity.node_id,
            self.config.node.name,
            now - self._started,
            {
                **asdict(self.counters),
                # Exchanges and pulls refused to keep peers fair (fairness.py);
                # connections refused: failed handshakes and admission caps.
                "refused_slots": self.participant.fairness.refused_exchanges,
                "refused_pulls": self.participant.fairness.refused_pulls,
                "refused_connections": self.network.refusals.total,
            },
            self.settings.traffic.sent,
            self.settings.traffic.received,
            dict(self.metrics),
            peers,
            {"tasks": tasks_under(self._task), "dialled_channels": len(self.channels)},
        )

    # -- the nursery ---------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; then write a final checkpoint and leave."""
        with structlog.contextvars.bound_contextvars(node=self.identity.node_id[:12]):
            self._started = trio.current_time()
            self._task = trio.lowlevel.current_task()
            try:
                async with trio.open_nursery() as nursery:
                    address: Address = await nursery.start(
                        self.network.serve, self._serve_connection, self.settings
                    )
                    self.address = address
                    self.participant.terms = self._terms(address.port)
                    if self.discovery is not None:
                        events_in, events = unbounded_channel()
                        own = own_announcement(self.identity, address)
                        await nursery.start(self.discovery(own).run, events_in)
                        nursery.start_soon(self._follow_discovery, events)
                    nursery.start_soon(self._checkpoint_loop)
                    nursery.start_soon(self.channels.reap_idle)
                    await nursery.start(self.store.serve_status, self.status)
                    log.info(
                        "node_started",
                        address=f"{','.join(address.hosts)}:{address.port}",
                        dim=self.model.dim,
                        restored=self.restored,
                    )
                    task_status.started(address)
                    await self._gossip_loop()
            finally:
                with trio.CancelScope(shield=True):
                    await self.checkpoint()
                    await self.channels.say_goodbye("node stopping")
                    log.info("node_stopped", **asdict(self.counters))

    async def _serve_connection(self, channel: MessageChannel) -> None:
        await respond(channel, self.participant)

    def _link_of(self, node_id: str) -> LinkEstimate:
        peer = self.table.get(node_id)
        return peer.link if peer is not None else LinkEstimate()

    def _advertise(self) -> None:
        """Keep the capacity and the peer sample in our hello up to date
        (the sample at most every :data:`PEER_SAMPLE_EVERY_S`)."""
        terms = self.participant.terms
        changes: dict[str, Any] = {}
        capacity = self.table.capacity() or 0.0
        if capacity != terms.hello.capacity:
            changes["capacity"] = capacity
        now = trio.current_time()
        if now >= self._sample_due:
            self._sample_due = now + PEER_SAMPLE_EVERY_S
            sample = encode_sample(self.table.shareable(self.rng))
            if sample != terms.hello.peers:
                changes["peers"] = sample
        if changes:
            hello = dataclasses.replace(terms.hello, **changes)
            self.participant.terms = dataclasses.replace(terms, hello=hello)

    def _met(self, hello: Hello, host: str | None) -> None:
        """A peer's hello arrived (either way; ``host``: the address it
        dialled us from): note what it advertises, and the peers it tells
        us about (peer exchange), itself included if it dialled us."""
        self.table.advertised(hello.node_id, hello.capacity)
        itself = [] if host is None else [SharedPeer(hello.node_id, host, hello.listen_port)]
        self._told(hello.node_id, hello.peers, itself)

    def _told(self, node_id: str, blob: bytes, itself: list[SharedPeer] | None = None) -> None:
        """Peer exchange: ``node_id`` told us of the peers in ``blob`` (and
        ``itself``, where it dialled us).  What we did not know is added,
        unproven; a sample that is not one is refused, the rest of the
        message it came in is not."""
        peers = list(itself or ())
        if blob:
            try:
                peers += decode_sample(blob)
            except SampleError as exc:
                held = self._bad_samples.admit(node_id)
                if held is not None:
                    reason = str(exc)
                    log.warning("peer_sample_refused", peer=node_id[:12], reason=reason, since=held)
        if not peers:
            return
        now = trio.current_time()
        swarm_id = self.identity.swarm_id  # a member: its certificate is of our swarm
        new = self.table.learned(peers, swarm_id, PROTOCOL_VERSION, now, self.counters.rounds)
        if new:
            self._peer_seen.set()
            held = self._learned_lines.admit(node_id)  # a member could tell us of fakes at length
            if held is not None:
                log.info("peers_learned", count=new, source=node_id[:12], since=held)

    def _sample_for(self, node_id: str) -> bytes:
        """Our peer sample for ``node_id``, if it has not had it for
        :data:`PEER_SAMPLE_EVERY_S`; else nothing."""
        now = trio.current_time()
        if now < self._sample_sent.get(node_id, 0.0):
            return b""
        if len(self._sample_sent) > self.table.max_peers:
            self._sample_sent = {n: t for n, t in self._sample_sent.items() if t > now}
        self._sample_sent[node_id] = now + PEER_SAMPLE_EVERY_S
        return self.participant.terms.hello.peers

    def _merged(self, node_id: str) -> None:
        """A responder merge landed: the peer and we are in contact."""
        self.counters.responded += 1
        self.table.succeeded(node_id, trio.current_time(), self.counters.rounds)
        self.penalties.exchanged(node_id, they_started=True)

    async def _follow_discovery(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async with trio.open_nursery() as checks:
            async for first in events:
                batch = [first]
                with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                    while True:  # what else is queued, without a checkpoint each
                        batch.append(events.receive_nowait())
                joined: list[Announcement] = []  # in order: a peer may leave and come back
                for event in batch:
                    if isinstance(event, Joined):
                        joined.append(event.peer)
                        continue
                    self._joined(joined)
                    joined = []
                    outcome = self.table.withdrawn(event.node_id, event.address)
                    if outcome is Withdrawal.GONE:
                        await self._left(event.node_id)
                    elif outcome is Withdrawal.CHECK and event.node_id not in self._checking:
                        self._checking.add(event.node_id)
                        checks.start_soon(self._check_still_there, event.node_id)
                self._joined(joined)
                await trio.sleep(DISCOVERY_BATCH_S)  # let the next ones queue up

    async def _left(self, node_id: str) -> None:
        await self.channels.drop(node_id)
        log.info("peer_left", peer=node_id[:12])

    async def _check_still_there(self, node_id: str) -> None:
        """A peer a handshake proved withdrew its announcement, or someone
        withdrew it for it (mDNS is unauthenticated): it stays if it still
        answers with its node id at its address."""
        try:
            peer = self.table.get(node_id)
            if peer is None:
                return
            try:
                with trio.fail_after(UNPROVEN_HANDSHAKE_S + 1.0):
                    found = await self.probe(peer.host, peer.port)
                if found.node_id == node_id:
                    log.info("withdrawal_ignored", peer=node_id[:12], reason="it still answers")
                    return
            except (*CONTACT_ERRORS, trio.TooSlowError):
                pass
            self.table.gone(node_id)
            await self._left(node_id)
        finally:
            self._checking.discard(node_id)

    def _joined(self, peers: list[Announcement]) -> None:
        now, round_ = trio.current_time(), self.counters.rounds
        for peer in peers:
            self.table.announced(
                peer.node_id,
                peer.host,
                peer.port,
                peer.swarm_id,
                peer.protocol_version,
                now,
                round_,
            )
        if len(peers) == 1:
            peer = peers[0]
            log.info("peer_discovered", peer=peer.node_id[:12], address=f"{peer.host}:{peer.port}")
        elif peers:  # a swarm that started together: one line, not hundreds
            log.info("peers_discovered", count=len(peers))
        if peers:
            self._peer_seen.set()

    async def _checkpoint_loop(self) -> None:
        while True:
            await trio.sleep(self.config.gossip.checkpoint_every_s)
            await self.checkpoint()

    async def probe(self, host: str, port: int) -> Announcement:
        """Who listens at ``host:port``: dial, exchange hellos, hang up.
        Raises what :meth:`Network.dial` and :func:`greet` raise."""
        deadline = trio.current_time() + self.settings.timeouts.handshake
        channel = await self.network.dial(host, port, self.settings, deadline=deadline)
        if channel.node_id == self.identity.node_id:  # its certificate is ours
            await channel.aclose()
            raise SeedIsSelfError(f"{host}:{port}")
        try:
            hello = await greet(channel, self.participant.terms, deadline=deadline)
        finally:
            await channel.say_bye("seed probe")
        return Announcement(hello.node_id, hello.swarm_id, PROTOCOL_VERSION, host, port)

    # -- the gossip loop -----------------------------------------------------------------

    async def _gossip_loop(self) -> None:
        await self._join()
        next_eval = trio.current_time()
        while True:
            began = trio.current_time()
            await self._train_round()
            trained = trio.current_time()
            await self._exchange_round(began)
            self.time_spent["training"] += trained - began
            self.time_spent["exchanging"] += trio.current_time() - trained
            self.counters.rounds += 1
            self._advertise()
            if trio.current_time() >= next_eval:
                await self._evaluate()
                next_eval = trio.current_time() + self.config.gossip.evaluate_every_s
            await trio.sleep(self.config.gossip.round_interval_s)

    async def _join(self) -> None:
        """A fresh node pulls one full model from its first partner, if one
        shows up within a few seconds, rather than starting from scratch.
        Until then it answers ``busy``: what it merged into its initial
        weights would be thrown away with them."""
        if self.restored:
            return
        try:
            with trio.move_on_after(JOIN_WAIT_S):
                await self._peer_seen.wait()
            # In the selector's order, not the table's: a swarm that starts
            # together would otherwise all pull from the same first peer.
            for peer in self._ranked()[:CANDIDATES]:
                seconds = self.deadlines.seconds(peer.link, SMALL_MESSAGE, 4 * self.model.dim)
                deadline = trio.current_time() + seconds
                try:
                    with self.channels.holding(peer.node_id):
                        channel, _ = await self.channels.get(peer, deadline)
                        params = await pull_model(channel, self.participant, deadline=deadline)
                except CONTACT_ERRORS as exc:
                    await self._contact_failed(peer, exc, self.deadlines.capped(seconds))
                    continue
                if params is not None:
                    self.model.replace(params)
                    log.info("model_pulled", peer=peer.node_id[:12])
                    return
        finally:
            self.model.ready = True

    async def _train_round(self) -> None:
        before = self.model.params.copy()  # merges may land while it trains
        steps = self.config.gossip.local_steps
        metrics, after = await self.trainer.train(before, steps)
        try:
            self.model.trained(before, after)
        except NonFiniteError as exc:
            # The model stays as it was; the next round trains from it again.
            # Logged the 1st, 2nd, 4th, 8th... time: reported, never a flood.
            times = self.counters.diverged = self.counters.diverged + 1
            if times & (times - 1) == 0:
                log.warning(
                    "training_diverged",
                    reason=str(exc),
                    times=times,
                    hint="lower the trainer's learning rate; the model was left unchanged",
                )
            return
        self.counters.steps += steps
        self.metrics.update({f"train_{k}": v for k, v in metrics.items()})

    async def _evaluate(self) -> None:
        self.metrics.update(await self.trainer.evaluate(self.model.params.copy()))
        log.info(
            "evaluated",
            rounds=self.counters.rounds,
            exchanges=self.counters.exchanges,
            **self.metrics,
        )

    async def _exchange_round(self, began: float) -> None:
        """Try up to :data:`CANDIDATES` partners in the selector's order
        until one exchange is done.  The round ends by the deadline of its
        first exchange: training never waits longer behind it.  ``began``:
        when the round (its training) began."""
        if self.model.busy():
            return  # answering a peer right now: one exchange at a time; next round
        candidates = self._candidates()
        if not candidates:
            await self._wait_for_a_partner()
            return
        ranked = self.selector.rank(candidates, self.counters.rounds, self.rng)
        round_end: float | None = None
        busy = self.counters.busy
        lost = 0.0  # seconds of contacts with unproven peers that failed
        for peer in ranked[:CANDIDATES]:
            k, seconds = self._plan(peer)
            now = trio.current_time()
            if round_end is None:
                round_end = now + seconds
            elif now + seconds > round_end:
                break  # not enough of the round left for a whole exchange
            done = await self._exchange_with(peer, k, now + seconds, self.deadlines.capped(seconds))
            if not peer.verified and not self._proven(peer.node_id):
                lost += trio.current_time() - now
            if done:
                self._lost_to_unproven(lost)
                return
        # A round that went to unproven peers which did not answer was lost
        # whole, training and all: by count alone they can take most rounds.
        self._lost_to_unproven(trio.current_time() - began if lost else 0.0)
        if self.counters.busy > busy:
            # Partners were busy, most likely initiating too.  Nodes whose
            # steps take equally long would otherwise meet in the same
            # instant every round and find each other busy forever; a
            # random pause shifts our phase for good (as in CSMA backoff).
            await trio.sleep(self.rng.uniform(0.0, self.participant.terms.busy_retry_s))

    def _ranked(self) -> list[Peer]:
        """:meth:`_candidates` in the selector's order (a selector may
        leave some out, or all: a centralised matching's unmatched node)."""
        return self.selector.rank(self._candidates(), self.counters.rounds, self.rng)

    def _candidates(self) -> list[Peer]:
        """Live peers (or a random sample of them), none penalised; only
        proven ones while unproven peers are over their time budget (unless
        there is no proven one to turn to)."""
        now = trio.current_time()
        candidates = self.table.sample(now, CONSIDERED, self.rng)
        barred = self.penalties.barred()
        if barred:
            candidates = [p for p in candidates if p.node_id not in barred]
        if not self.unproven.allowed():
            proven = [p for p in candidates if p.verified] or [
                p for p in self.table.live(now) if p.verified
            ][:CONSIDERED]
            candidates = proven or candidates
        return candidates

    async def _wait_for_a_partner(self) -> None:
        """No peer to try this round.  Partners that answered ``busy`` are
        free again within a fraction of a second: train on meanwhile.  But
        with none at all, or all failing (our link is cut), training on
        regardless ran 6,600 rounds a second instead of 130 and drifted
        toward the node's own shard (docs/reliability.md): wait for the
        next peer due, a second at most, as an exchange would have."""
        now = trio.current_time()
        waiting = [p for p in self.table.all() if p.present and p.retry_at > now]
        if any(p.failures == 0 for p in waiting):
            return  # only busy
        due = min([*(p.retry_at for p in waiting), self.penalties.next_free()])
        await trio.sleep_until(min(due, now + ALONE_WAIT_S))

    def _proven(self, node_id: str) -> bool:
        """A handshake has proved ``node_id`` (at some address)."""
        peer = self.table.get(node_id)
        return peer is not None and peer.proven is not None

    def _lost_to_unproven(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self.unproven.lost(seconds)
        now = trio.current_time()
        if self.unproven.allowed() or (
            self._unproven_logged is not None and now - self._unproven_logged < UNPROVEN_LOG_EVERY_S
        ):
            return
        self._unproven_logged = now
        log.warning(
            "unproven_peers_over_budget",
            lost_s=round(self.unproven.lost_s, 1),
            unproven=sum(not p.verified for p in self.table.all()),
            hint="announced peers that never answer (a flood of fake mDNS records?): "
            "proven peers only for now",
        )

    def _plan(self, peer: Peer) -> tuple[int, float]:
        """How many coordinates to exchange with ``peer``, and how long the
        exchange may take."""
        dtype = self.participant.terms.value_dtype
        k = exchange_k(
            self.compressor,
            self.model.dim,
            self.config.gossip.density,
            value_size(dtype),
            peer.link.bandwidth if peer.link.known else None,
            self.config.gossip.exchange_budget_s,
        )
        values = k * value_size(dtype)
        out = math.ceil(self.compressor.index_bytes(self.model.dim, k)) + values + SMALL_MESSAGE
        return k, self.deadlines.seconds(peer.link, out, values + SMALL_MESSAGE)

    async def _exchange_with(self, peer: Peer, k: int, deadline: float, capped: bool) -> bool:
        """One exchange with ``peer`` by ``deadline`` (``capped``: the
        configured limit, not sized to the payload); returns whether the
        round is over (merged, half-merged, or a peer took our slot)."""
        with self.channels.holding(peer.node_id):
            return await self._attempt_exchange(peer, k, deadline, capped)

    async def _attempt_exchange(self, peer: Peer, k: int, deadline: float, capped: bool) -> bool:
        for attempt in (1, 2):
            reused = False
            try:
                channel, reused = await self.channels.get(peer, deadline)
                if self.model.busy():
                    return True  # a peer started an exchange with us while we dialled
                self._xid += 1
                result = await initiate(
                    channel, self.participant, k=k, xid=self._xid, rng=self.rng, deadline=deadline
                )
            except CONTACT_ERRORS as exc:
                if attempt == 1 and reused and isinstance(exc, PeerError) and exc.went_away:
                    # The peer closed this connection while it sat idle: not a
                    # failure of the peer.  Nothing merged; try a fresh one.
                    self.channels.forget(peer.node_id)
                    continue
                await self._contact_failed(peer, exc, capped)
                self.counters.failed_exchanges += 1
                return False
            except Exception:  # a bug on our side: this peer's attempt only
                log.error("exchange_error", peer=peer.node_id[:12], exc_info=True)
                await self.channels.drop(peer.node_id)
                self.counters.failed_exchanges += 1
                return False
            end = trio.current_time()
            if result.outcome is Outcome.BUSY:
                # Jitter: two nodes that keep initiating toward each other at
                # the same moment would otherwise collide forever.
                retry = result.busy_retry_s * self.rng.uniform(0.5, 1.5)
                self.table.busy(peer.node_id, end, retry)
                self.counters.busy += 1
                return False
            self.table.succeeded(peer.node_id, end, self.counters.rounds)
            self.penalties.exchanged(peer.node_id, they_started=False)
            if result.outcome is Outcome.HALF_MERGED:
                self.counters.half_merges += 1
                # Our half landed, the peer's did not: mass is lost, once.
                log.warning("exchange_half_merged", peer=peer.node_id[:12], reason=result.reason)
                await self.channels.drop(peer.node_id)
            else:
                self.counters.exchanges += 1
            return True
        return False

    async def _contact_failed(self, peer: Peer, exc: Exception, capped: bool) -> None:
        """Back the peer off and log why.  A :class:`PeerError` was already
        logged, at its level, where it arose: this line only says which
        contact it cost, so it is info; other failures (refused, unreachable,
        handshake) are logged here only, as warnings."""
        details: dict[str, Any] = {"peer": peer.node_id[:12], "address": peer.address}
        details["reason"] = str(exc)
        timed_out = isinstance(exc, PeerError) and exc.timed_out
        verdict = self.penalties.failed(
            peer.node_id, stalled=timed_out and not capped, proven=self._proven(peer.node_id)
        )
        if capped and timed_out:
            details["hint"] = (
                "this transfer may need longer than [gossip] exchange_timeout_s "
                f"({self.deadlines.cap_s:g}s) on this link; raise it"
            )
        elif verdict.penalised:
            details["not_before_s"] = self.penalties.penalty_s
        elif timed_out and verdict.own_link:
            details["not_penalised"] = "other partners failed too since our last exchange"
        if isinstance(exc, PeerError):
            log.info("exchange_failed", **details)
        else:
            log.warning("exchange_failed", **details)
        self.table.failed(peer.node_id, trio.current_time(), verdict.retry_cap_s)
        await self.channels.drop(peer.node_id)


def tasks_under(task: trio.lowlevel.Task | None) -> int:
    """Trio tasks running under ``task``, itself included (0 before it
    runs): one node's own, even where a simulation runs many in one loop."""
    count, stack = 0, [] if task is None else [task]
    while stack:
        count += 1
        for nursery in stack.pop().child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def own_announcement(identity: NodeIdentity, address: Address) -> Announcement:
    """What a node listening at ``address`` announces about itself."""
    return Announcement(
        identity.node_id, identity.swarm_id, PROTOCOL_VERSION, address.hosts[0], address.port
    )


def _node_selector(config: Config, exchange_bytes: int) -> Selector:
    """The configured selector, which must rank peers on its own (a
    simulator-only reference such as ``oracle-matching`` cannot)."""
    where = f"{config.path or '<config>'}: [gossip] selector"
    name = config.gossip.selector
    try:
        selector = load_selector(
            name, max_staleness=config.gossip.max_staleness, exchange_bytes=exchange_bytes
        )
    except PluginError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(selector, Selector):
        raise ConfigError(
            f"{where} = {name!r} is a simulator-only reference (it needs every link's "
            "bandwidth at once) and cannot run in a node; use 'bandwidth' or 'uniform'"
        )
    return selector


def _frame_limit(config: Config, dim: int, compressor: Compressor) -> int:
    needed = frame_bytes_needed(dim, compressor)
    configured = config.gossip.max_frame_bytes
    if configured and configured < needed:
        raise ConfigError(
            f"{config.path or '<config>'}: [gossip] max_frame_bytes = {configured} is below the "
            f"{needed} bytes this model needs (a full model for a late joiner, or a dense "
            "exchange); raise it, or set 0 to size it to the model"
        )
    return configured or needed
