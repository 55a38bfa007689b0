"""One exchange at a time, and a request that finds the node answering
another waits for the slot instead of being answered ``busy`` (which cost
its initiator a round trip, a pause and, before the busy, its whole
payload).  Runs over TLS on in-memory streams in virtual time."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import trio
import trio.testing

from gossipfl.compress import encode_indices, encode_values
from gossipfl.node.partner import Participant, greet, respond
from gossipfl.protocol import Busy, Exchange, ExchangeCommit, ExchangeReply, Message
from gossipfl.transport import MessageChannel, PeerError
from tests.swarm_fixtures import DIM, Swarm, model_and_terms, tls_pair

INDICES = np.arange(0, 50, dtype=np.int64)


async def _greeted(swarm: Swarm, i: int, responder: Participant) -> MessageChannel:
    """Member ``i`` connected to the responder (the last member), which
    serves the connection in the background."""
    ours, theirs = await tls_pair(swarm.members[i], swarm.members[-1])
    _, terms = model_and_terms(swarm.members[i])
    trio.lowlevel.spawn_system_task(_serve, theirs, responder)
    await greet(ours, terms, deadline=trio.current_time() + 10)
    return ours


async def _serve(channel: MessageChannel, responder: Participant) -> None:
    with contextlib.suppress(PeerError):  # an initiator that never commits, on purpose
        await respond(channel, responder)


async def _offer(channel: MessageChannel, xid: int) -> None:
    values = encode_values(np.full(INDICES.size, 0.5, np.float32))
    await channel.send(Exchange(xid, encode_indices(INDICES, DIM), values))


async def _reply_at(channel: MessageChannel) -> tuple[Message, float]:
    reply = await channel.receive()
    return reply, trio.current_time()


async def test_a_request_waits_for_the_answer_in_progress_then_is_served(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    model, terms = model_and_terms(swarm.members[-1])
    merged: list[str] = []
    responder = Participant(model, terms, merged=merged.append)
    first, second = await _greeted(swarm, 0, responder), await _greeted(swarm, 1, responder)

    await _offer(first, 1)
    assert isinstance(await first.receive(), ExchangeReply)  # the responder is answering
    asked = trio.current_time()
    await _offer(second, 2)
    await trio.sleep(0.3)  # the first initiator takes its time to commit
    committed = trio.current_time()
    await first.send(ExchangeCommit(1))
    reply, at = await _reply_at(second)

    assert isinstance(reply, ExchangeReply), reply  # not busy: it waited for the slot
    assert at - committed < 0.01
    # and it says how long, so that its initiator's link estimate leaves it out
    assert reply.held_s == pytest.approx(committed - asked, abs=0.01)
    await second.send(ExchangeCommit(2))
    await trio.sleep(0.1)
    assert merged == [swarm.members[0].node_id, swarm.members[1].node_id]
    assert not model.busy()


async def test_only_one_request_waits_and_not_for_longer_than_the_queue_limit(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    model, terms = model_and_terms(swarm.members[-1])
    responder = Participant(model, terms)
    # (the third from the same member as the second, on its own connection)
    stalling, waiting, third = [await _greeted(swarm, i, responder) for i in (0, 1, 1)]

    await _offer(stalling, 1)
    assert isinstance(await stalling.receive(), ExchangeReply)  # and then no commit
    asked = trio.current_time()
    await _offer(waiting, 2)
    await trio.sleep(0.1)
    await _offer(third, 3)
    reply, at = await _reply_at(third)
    assert isinstance(reply, Busy)  # someone already waits: answered at once
    assert at - asked < 0.2

    reply, at = await _reply_at(waiting)
    assert isinstance(reply, Busy)  # the answer in progress outlasted the queue limit
    assert at - asked == pytest.approx(terms.queue_s, abs=0.01)
    assert reply.held_s == pytest.approx(terms.queue_s)


async def test_a_node_that_initiates_answers_busy_at_once(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    """An initiator waits on its partner, who may wait on someone else: a
    request queued behind it could join a cycle of waiting nodes."""
    model, terms = model_and_terms(swarm.members[-1])
    channel = await _greeted(swarm, 0, Participant(model, terms))
    model.take(answering=False)
    asked = trio.current_time()
    await _offer(channel, 1)
    reply, at = await _reply_at(channel)
    assert isinstance(reply, Busy)
    assert at == asked
