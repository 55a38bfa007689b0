"""The adapter between a node's model and one peer: it drives the sans-IO
protocol over a :class:`~gossipfl.transport.MessageChannel`.

The daemon and simnet both talk to partners through these functions; only
the channel under them differs.  Every payload is validated where it
enters; anything wrong from the peer is refused through
:meth:`MessageChannel.reject` (logged with the peer's name, channel closed,
:class:`PeerError` raised) before it can touch the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import structlog

from gossipfl.compress import Compressor, PayloadError, ValueDtype, decode_values, encode_values
from gossipfl.compress.codec import FloatArray, IndexArray
from gossipfl.node.model import ModelState
from gossipfl.protocol import (
    Busy,
    Bye,
    Exchange,
    ExchangeCommit,
    ExchangeReply,
    Hello,
    Model,
    ModelRequest,
)
from gossipfl.transport.channel import MessageChannel

log = structlog.get_logger("gossipfl.node")


@dataclass(frozen=True)
class ExchangeTerms:
    """What this node offers and accepts."""

    hello: Hello
    compressor: Compressor
    value_dtype: ValueDtype = "float32"
    max_density: float = 1.0  # refuse index sets larger than this share of the model
    busy_retry_s: float = 0.1

    @property
    def max_count(self) -> int:
        return max(1, int(np.ceil(self.max_density * self.hello.dim)))


def incompatibility(ours: Hello, theirs: Hello) -> str | None:
    """Why a peer cannot gossip with us, or ``None`` if it can."""
    if theirs.node_id == ours.node_id:
        return "peer has our own node id"
    for what in ("swarm_id", "trainer", "compressor", "dim"):
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
        await channel.send(Bye(reason))
        await channel.reject(f"refused at hello: {reason}")


async def greet(channel: MessageChannel, terms: ExchangeTerms) -> Hello:
    """Initiator: exchange hellos; returns the peer's."""
    await channel.send(terms.hello)
    reply = await channel.receive()
    if isinstance(reply, Bye):
        await channel.reject(f"refused us at hello: {reply.reason}")
    assert isinstance(reply, Hello)  # the session allows nothing else here
    await _check_hello(channel, terms, reply)
    return reply


async def respond(channel: MessageChannel, model: ModelState, terms: ExchangeTerms) -> None:
    """Responder: serve one connection until the peer says bye.

    Raises :class:`PeerError` when the peer misbehaves or goes away.
    """
    hello = await channel.receive()
    assert isinstance(hello, Hello)
    await _check_hello(channel, terms, hello)
    await channel.send(terms.hello)
    while True:
        message = await channel.receive()
        if isinstance(message, Bye):
            await channel.aclose()
            return
        if isinstance(message, ModelRequest):
            await channel.send(Model(encode_values(model.params, "float32")))
        elif isinstance(message, Exchange):
            await _respond_exchange(channel, model, terms, message)


async def _respond_exchange(
    channel: MessageChannel, model: ModelState, terms: ExchangeTerms, request: Exchange
) -> None:
    try:
        indices = terms.compressor.resolve(request.indices, model.dim, terms.max_count)
        received = decode_values(request.values, indices.size, terms.value_dtype)
    except PayloadError as exc:
        await channel.reject(f"bad exchange {request.xid}: {exc}")
    if model.in_exchange:
        await channel.send(Busy(terms.busy_retry_s))
        return
    model.in_exchange = True
    try:
        sent = model.outgoing(indices, terms.value_dtype)
        await channel.send(ExchangeReply(request.xid, encode_values(sent, terms.value_dtype)))
        commit = await channel.receive()
        if isinstance(commit, ExchangeCommit):
            model.merge_later(indices, sent, received)
    finally:
        model.in_exchange = False


@dataclass(frozen=True)
class ExchangeResult:
    """What one exchange did, for counters and bandwidth estimates."""

    indices: IndexArray
    busy_retry_s: float | None  # set when the peer was busy and nothing merged


async def initiate(
    channel: MessageChannel,
    model: ModelState,
    terms: ExchangeTerms,
    *,
    k: int,
    xid: int,
    rng: np.random.Generator,
) -> ExchangeResult:
    """Initiator: one exchange over a greeted channel.

    The model changes only if the reply is valid; the commit goes out after
    the merge, so a failure before the reply leaves both sides untouched.
    """
    if model.in_exchange:
        raise RuntimeError("the node is already in an exchange")
    model.in_exchange = True
    try:
        selection = terms.compressor.select(model.residual, k, rng)
        sent = model.outgoing(selection.indices, terms.value_dtype)
        await channel.send(Exchange(xid, selection.wire, encode_values(sent, terms.value_dtype)))
        reply = await channel.receive()
        if isinstance(reply, Busy):
            return ExchangeResult(selection.indices, reply.retry_after)
        if isinstance(reply, Bye):
            await channel.reject(f"left during exchange {xid}: {reply.reason}")
        assert isinstance(reply, ExchangeReply)
        try:
            received = decode_values(reply.values, selection.indices.size, terms.value_dtype)
        except PayloadError as exc:
            await channel.reject(f"bad reply to exchange {xid}: {exc}")
        model.merge_now(selection.indices, sent, received)
        await channel.send(ExchangeCommit(xid))
        return ExchangeResult(selection.indices, None)
    finally:
        model.in_exchange = False


async def pull_model(channel: MessageChannel, dim: int) -> FloatArray | None:
    """Late joiner: ask a greeted peer for its full model; ``None`` if busy."""
    await channel.send(ModelRequest())
    reply = await channel.receive()
    if isinstance(reply, Busy):
        return None
    if not isinstance(reply, Model):
        await channel.reject(f"answered a model request with {reply.TYPE}")
    try:
        return decode_values(reply.values, dim, "float32")
    except PayloadError as exc:
        await channel.reject(f"bad model: {exc}")
