"""The adapter between a node's model and one peer: it drives the sans-IO
protocol over a :class:`~gossipfl.transport.MessageChannel`.

The daemon, the in-process swarm and simnet all talk to partners through
these functions; only the channel under them differs.  Every payload is
validated where it enters; anything wrong from the peer is refused through
:meth:`MessageChannel.reject` (logged with the peer's name, channel closed,
:class:`PeerError` raised) before it can touch the model.  Every wait
inside an exchange has a deadline sized to that exchange.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np
import structlog
import trio

from gossipfl.compress import Compressor, PayloadError, ValueDtype, decode_values, encode_values
from gossipfl.compress.codec import FloatArray, IndexArray
from gossipfl.node.bounds import ValueBound
from gossipfl.node.deadlines import DeadlinePolicy
from gossipfl.node.fairness import Fairness
from gossipfl.node.model import ModelState, NonFiniteError
from gossipfl.protocol import (
    Busy,
    Bye,
    Exchange,
    ExchangeCommit,
    ExchangeReply,
    Hello,
    Message,
    Model,
    ModelRequest,
)
from gossipfl.topology.links import LinkEstimate
from gossipfl.transport.channel import MessageChannel, PeerError

log = structlog.get_logger("gossipfl.node")
SMALL_MESSAGE = 64  # bytes, at most: a commit, a busy, a request


@dataclass(frozen=True)
class ExchangeTerms:
    """What this node offers and accepts."""

    hello: Hello
    compressor: Compressor
    value_dtype: ValueDtype = "float32"
    max_density: float = 1.0  # refuse index sets larger than this share of the model
    busy_retry_s: float = 0.1
    # A request that finds us answering another waits this long for the
    # slot before it is answered busy: well inside the 2 s floor of the
    # initiator's deadline, and longer than most answers take.
    queue_s: float = 0.5
    deadlines: DeadlinePolicy = field(default_factory=DeadlinePolicy)
    bound: ValueBound = field(default_factory=ValueBound)

    @property
    def max_count(self) -> int:
        return max(1, int(np.ceil(self.max_density * self.hello.dim)))


@dataclass
class Participant:
    """This node as its partners meet it: the model it exchanges, its
    terms, what it knows of each peer's link, and hooks for the node's
    bookkeeping: a peer's hello arrived (from the host that dialled us, if
    it did), a round trip with a peer was timed, a responder merge landed;
    and peer exchange: the sample of peers to send a partner now (often
    none), and the one a partner sent."""

    model: ModelState
    terms: ExchangeTerms
    link_of: Callable[[str], LinkEstimate] = lambda node_id: LinkEstimate()
    met: Callable[[Hello, str | None], None] = lambda hello, host: None
    measured: Callable[[str, int, float], None] = lambda node_id, nbytes, seconds: None
    merged: Callable[[str], None] = lambda node_id: None
    sample_for: Callable[[str], bytes] = lambda node_id: b""
    told: Callable[[str, bytes], None] = lambda node_id, peers: None
    fairness: Fairness = field(default_factory=lambda: Fairness(trio.current_time))


@dataclass(frozen=True)
class RoundTrip:
    """A round trip being timed: when it began, and how many bytes the
    channel had moved by then."""

    at: float
    moved: int

    @staticmethod
    def of(channel: MessageChannel) -> RoundTrip:
        return RoundTrip(trio.current_time(), channel.bytes_sent + channel.bytes_received)

    def report(
        self, channel: MessageChannel, node_id: str, us: Participant, held_s: float = 0.0
    ) -> None:
        """Tell ``us`` how long the round trip since this mark took, less
        ``held_s`` the peer says it kept our request waiting, and what it
        moved.  A wait longer than the round trip itself is a lie: no
        sample."""
        moved = channel.bytes_sent + channel.bytes_received - self.moved
        seconds = trio.current_time() - self.at - held_s
        if seconds > 0:
            us.measured(node_id, moved, seconds)


def incompatibility(ours: Hello, theirs: Hello) -> str | None:
    """Why a peer cannot gossip with us, or ``None`` if it can."""
    if theirs.node_id == ours.node_id:
        return "peer has our own node id"
    for what in ("swarm_id", "trainer", "compressor", "value_dtype", "dim"):
        if getattr(theirs, what) != getattr(ours, what):
            mine, its = getattr(ours, what), getattr(theirs, what)
            return f"{what} differs: peer has {its!r}, we have {mine!r}"
    if theirs.model_hash != ours.model_hash:
        return "initial model differs (another seed or trainer version)"
    return None


async def _check_hello(channel: MessageChannel, terms: ExchangeTerms, theirs: Hello) -> None:
    reason = incompatibility(terms.hello, theirs)
    if reason is None and channel.node_id is not None and theirs.node_id != channel.node_id:
        reason = "hello names another node than its certificate"
    if reason is not None:
        await channel.say_bye(reason)
        await channel.reject(f"refused at hello: {reason}")


async def _check_values(
    channel: MessageChannel,
    us: Participant,
    received: FloatArray,
    indices: IndexArray | None,
    what: str,
) -> None:
    """Refuse ``received`` (at ``indices``; ``None``: the whole model) if it
    is out of our bound: the channel closes before anything is merged."""
    params = us.model.params
    ours = params if indices is None else params[indices]
    reason = us.terms.bound.violation(received, ours, params)
    if reason is not None:
        await channel.reject(f"refused {what}: {reason}")


async def _unexpected(channel: MessageChannel, message: Message, waiting_for: str) -> NoReturn:
    if isinstance(message, Bye):
        reason = f"said bye ({message.reason}) instead of {waiting_for}"
        await channel.reject(reason, went_away=True)
    await channel.reject(f"sent {message.TYPE} instead of {waiting_for}")


async def greet(channel: MessageChannel, terms: ExchangeTerms, *, deadline: float) -> Hello:
    """Initiator: exchange hellos by ``deadline``; returns the peer's."""
    await channel.send(terms.hello, deadline=deadline)
    reply = await channel.receive(deadline=deadline, waiting_for="hello")
    if isinstance(reply, Bye):
        await channel.reject(f"refused us at hello: {reply.reason}")
    if not isinstance(reply, Hello):
        await _unexpected(channel, reply, "hello")
    await _check_hello(channel, terms, reply)
    return reply


async def respond(channel: MessageChannel, us: Participant) -> None:
    """Responder: serve one connection until the peer says bye or stays
    idle for the idle timeout.

    Raises :class:`PeerError` when the peer misbehaves or goes away.
    """
    terms = us.terms
    hello_by = trio.current_time() + channel.timeouts.handshake
    hello = await channel.receive(deadline=hello_by, waiting_for="hello")
    if not isinstance(hello, Hello):
        await _unexpected(channel, hello, "hello")
    await _check_hello(channel, terms, hello)
    us.met(hello, channel.host)
    await channel.send(terms.hello)
    while not channel.closed:
        message = await channel.next_request()
        if message is None:
            await channel.say_bye(f"idle for {channel.timeouts.idle:g}s")
            return
        if isinstance(message, Bye):
            await channel.aclose()
            return
        if isinstance(message, ModelRequest):
            await _serve_model(channel, us, hello.node_id)
        elif isinstance(message, Exchange):
            await _respond_exchange(channel, us, hello.node_id, message)
        else:  # the session lets nothing else through here; refuse, never assert
            await _unexpected(channel, message, "a request")


async def _serve_model(channel: MessageChannel, us: Participant, peer_id: str) -> None:
    if not us.model.ready or not us.fairness.may_pull(peer_id):
        await channel.send(Busy(us.terms.busy_retry_s))
        return
    await channel.send(Model(encode_values(us.model.params, "float32")))


async def _respond_exchange(
    channel: MessageChannel, us: Participant, peer_id: str, request: Exchange
) -> None:
    model, terms = us.model, us.terms
    try:
        indices = terms.compressor.resolve(request.indices, model.dim, terms.max_count)
        received = decode_values(request.values, indices.size, terms.value_dtype)
    except PayloadError as exc:
        await channel.reject(f"bad exchange {request.xid}: {exc}")
    await _check_values(channel, us, received, indices, f"exchange {request.xid}")
    us.told(peer_id, request.peers)  # busy or not
    held = 0.0
    if not model.accepting():
        us.fairness.busy_for(peer_id)
        since = trio.current_time()
        if not await model.queue_for_slot(terms.queue_s):
            await channel.send(Busy(terms.busy_retry_s, trio.current_time() - since))
            return
        held = trio.current_time() - since
    if not us.fairness.may_exchange(peer_id):
        await channel.send(Busy(terms.busy_retry_s, held))
        return
    model.take(answering=True)
    us.fairness.started(peer_id)
    committed = stalled = False
    try:
        sent = model.outgoing(indices, terms.value_dtype)
        values = encode_values(sent.values, terms.value_dtype)
        reply = ExchangeReply(request.xid, values, held, us.sample_for(peer_id))
        seconds = terms.deadlines.seconds(us.link_of(peer_id), len(reply.values), SMALL_MESSAGE)
        deadline = trio.current_time() + seconds
        mark = RoundTrip.of(channel)
        await channel.send(reply, deadline=deadline)
        commit = await channel.receive(
            deadline=deadline, waiting_for=f"commit of exchange {request.xid}"
        )
        if isinstance(commit, Bye):  # it gave up on the exchange: nothing to merge
            await channel.aclose()
        elif isinstance(commit, ExchangeCommit):
            committed = True
            mark.report(channel, peer_id, us)
            try:
                model.merge(sent, received)
            except NonFiniteError as exc:  # the initiator merged: mass is lost, once
                await channel.reject(f"refused exchange {request.xid} at commit: {exc}")
            us.merged(peer_id)
        else:
            await _unexpected(channel, commit, f"commit of exchange {request.xid}")
    except PeerError as exc:
        stalled = exc.timed_out
        raise
    finally:
        model.release()
        us.fairness.ended(peer_id, committed=committed, stalled=stalled)


class Outcome(enum.Enum):
    MERGED = "merged"  # both sides merged (the commit went out)
    BUSY = "busy"  # the partner was busy; nothing changed
    HALF_MERGED = "half_merged"  # we merged; the commit may not have arrived


@dataclass(frozen=True)
class ExchangeResult:
    """What one exchange did, for counters and link estimates."""

    outcome: Outcome
    indices: IndexArray
    bytes_out: int = 0
    bytes_back: int = 0
    busy_retry_s: float = 0.0
    reason: str = ""  # why a half-merge lost its commit


async def initiate(
    channel: MessageChannel,
    us: Participant,
    *,
    k: int,
    xid: int,
    rng: np.random.Generator,
    deadline: float,
) -> ExchangeResult:
    """Initiator: one exchange over a greeted channel, done by ``deadline``.

    Raises :class:`PeerError` if it fails before we merge: then neither
    side changed.  Once we have merged, a failure to deliver the commit is
    a :attr:`Outcome.HALF_MERGED` result, not an error: our model moved.
    """
    model, terms = us.model, us.terms
    model.take(answering=False)
    try:
        selection = terms.compressor.select(model.residual, k, rng)
        sent = model.outgoing(selection.indices, terms.value_dtype)
        values = encode_values(sent.values, terms.value_dtype)
        partner = channel.node_id
        sample = b"" if partner is None else us.sample_for(partner)
        request = Exchange(xid, selection.wire, values, sample)
        mark = RoundTrip.of(channel)
        await channel.send(request, deadline=deadline)
        reply = await channel.receive(deadline=deadline, waiting_for=f"reply to exchange {xid}")
        if channel.node_id is not None and isinstance(reply, Busy | ExchangeReply):
            mark.report(channel, channel.node_id, us, reply.held_s)
        if isinstance(reply, Busy):
            return ExchangeResult(Outcome.BUSY, selection.indices, busy_retry_s=reply.retry_after)
        if not isinstance(reply, ExchangeReply):
            await _unexpected(channel, reply, f"reply to exchange {xid}")
        if partner is not None:
            us.told(partner, reply.peers)
        try:
            received = decode_values(reply.values, selection.indices.size, terms.value_dtype)
        except PayloadError as exc:
            await channel.reject(f"bad reply to exchange {xid}: {exc}")
        await _check_values(channel, us, received, selection.indices, f"reply to exchange {xid}")
        try:
            model.merge(sent, received)
        except NonFiniteError as exc:  # nothing merged: no commit, the peer merges nothing
            await channel.reject(f"refused reply to exchange {xid}: {exc}")
        out, back = len(request.values) + len(request.indices), len(reply.values)
        try:
            await channel.send(ExchangeCommit(xid), deadline=deadline)
        except PeerError as exc:
            return ExchangeResult(
                Outcome.HALF_MERGED, selection.indices, out, back, 0.0, exc.reason
            )
        return ExchangeResult(Outcome.MERGED, selection.indices, out, back)
    finally:
        model.release()


async def pull_model(
    channel: MessageChannel, us: Participant, *, deadline: float
) -> FloatArray | None:
    """Late joiner: ask a greeted peer for its full model by ``deadline``;
    ``None`` if it is busy."""
    mark = RoundTrip.of(channel)
    await channel.send(ModelRequest(), deadline=deadline)
    reply = await channel.receive(deadline=deadline, waiting_for="model")
    if channel.node_id is not None and isinstance(reply, Busy | Model):
        mark.report(channel, channel.node_id, us)
    if isinstance(reply, Busy):
        return None
    if not isinstance(reply, Model):
        await _unexpected(channel, reply, "model")
    try:
        params = decode_values(reply.values, us.model.dim, "float32")
    except PayloadError as exc:
        await channel.reject(f"bad model: {exc}")
    await _check_values(channel, us, params, None, "model")
    return params
