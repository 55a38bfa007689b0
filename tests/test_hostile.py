"""An authenticated member turned hostile: whatever it sends, the responder
logs a reason naming it, closes that connection only, and leaves its model
and residual exactly as they were.  Runs over TLS on in-memory streams in
virtual time."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

import msgpack
import numpy as np
import pytest
import structlog.testing
import trio
import trio.testing

from gossipfl.compress import encode_indices, encode_values
from gossipfl.node.partner import Outcome, Participant, greet, initiate, pull_model, respond
from gossipfl.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Exchange,
    ExchangeCommit,
    ExchangeReply,
    Message,
    Model,
    ModelRequest,
    encode_message,
    frame,
)
from gossipfl.transport import PeerError, Timeouts
from tests.swarm_fixtures import DIM, MAX_FRAME, Swarm, model_and_terms, tls_pair


def _raw(message: Message) -> bytes:
    return frame(encode_message(message), MAX_FRAME)


def _frame_of(body: object) -> bytes:
    return frame(msgpack.packb(body, use_bin_type=True), MAX_FRAME)


def _exchange(indices: np.ndarray, values: np.ndarray, xid: int = 1) -> bytes:
    # Raw bytes, not encode_values: our own encoder refuses NaN.
    return _raw(
        Exchange(xid, encode_indices(indices.astype(np.int64), DIM), values.astype("<f4").tobytes())
    )


GOOD_INDICES = np.arange(0, 100, dtype=np.int64)
GOOD_VALUES = np.ones(100, dtype=np.float32)

Attack = Callable[[trio.abc.Stream], Awaitable[None]]


def sends(*chunks: bytes, then_close: bool = False) -> Attack:
    async def attack(stream: trio.abc.Stream) -> None:
        for chunk in chunks:
            await stream.send_all(chunk)
        if then_close:
            await stream.aclose()

    return attack


def _unsorted_indices_blob() -> bytes:
    # A hand-made gaps blob can only encode increasing indices, so the
    # "unsorted" attack is a gap that wraps past the model dimension.
    return bytes([0, 2, 0, 10]) + bytes([0xE8, 0x07])  # 10, then 10 + 1 + 1000


CASES: dict[str, tuple[Attack, str]] = {
    "4 GiB length prefix": (sends(b"\xff\xff\xff\xff"), "4294967295 bytes announced"),
    "truncated frame": (
        sends(_exchange(GOOD_INDICES, GOOD_VALUES)[:50], then_close=True),
        "closed inside a frame|connection lost",
    ),
    "msgpack but not a message": (sends(_frame_of([1, 2])), "undecodable"),
    "a map that is not a message": (sends(_frame_of({"hello": "there"})), "protocol version None"),
    "unknown message type": (
        sends(_frame_of({"v": PROTOCOL_VERSION, "type": "steal"})),
        "unknown message type 'steal'",
    ),
    "wrong protocol version": (
        sends(_frame_of({"v": 99, "type": "bye", "reason": "x"})),
        "protocol version 99",
    ),
    "commit before any exchange": (sends(_raw(ExchangeCommit(1))), "unexpected exchange_commit"),
    "reply to nothing": (sends(_raw(ExchangeReply(1, b""))), "unexpected exchange_reply"),
    "index out of range": (
        sends(
            _raw(
                Exchange(
                    1,
                    encode_indices(np.array([5, 2000]), 4000),
                    encode_values(np.ones(2, np.float32)),
                )
            )
        ),
        "out of range|gap beyond",
    ),
    "unsorted indices": (
        sends(_raw(Exchange(1, _unsorted_indices_blob(), encode_values(np.ones(2, np.float32))))),
        "out of range|gap beyond",
    ),
    "more indices than allowed": (
        sends(_exchange(np.arange(DIM), np.ones(DIM, np.float32))),
        "exceeds the limit 500",
    ),
    "values shorter than indices": (
        sends(_raw(Exchange(1, encode_indices(GOOD_INDICES, DIM), b"\x00" * 8))),
        "8 value bytes, expected 100 x 4",
    ),
    "NaN values": (sends(_exchange(GOOD_INDICES, np.full(100, np.nan, np.float32))), "NaN or Inf"),
    "Inf values": (sends(_exchange(GOOD_INDICES, np.full(100, np.inf, np.float32))), "NaN or Inf"),
    # Finite, so the codec takes them; merged, they overflowed the next
    # training step and crashed the node (and every restart from its
    # checkpoint).  Our model here is of magnitude ~5: the bound is ~50.
    "huge finite values (1e30)": (
        sends(_exchange(GOOD_INDICES, np.full(100, 1e30, np.float32))),
        "refused exchange 1: a value of magnitude 1e\\+30 is beyond 10x",
    ),
    "float32's largest value": (
        sends(_exchange(GOOD_INDICES, np.full(100, -3.4e38, np.float32))),
        "refused exchange 1: a value of magnitude 3.4e\\+38",
    ),
    "values 100x the model's": (
        sends(_exchange(GOOD_INDICES, np.full(100, 500.0, np.float32))),
        "refused exchange 1: a value of magnitude 500",
    ),
    "stops sending mid-frame": (
        sends(_exchange(GOOD_INDICES, GOOD_VALUES)[:-10]),
        "stalled: message incomplete after 30s",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_hostile_member_is_refused_and_the_model_is_untouched(
    swarm: Swarm, case: str, autojump_clock: trio.testing.MockClock
) -> None:
    attack, reason = CASES[case]
    attacker, victim = await tls_pair(
        swarm.members[0], swarm.members[1], Timeouts(read=30, idle=120)
    )
    model, terms = model_and_terms(swarm.members[1])
    params, residual = model.params.copy(), model.residual.copy()
    _, attacker_terms = model_and_terms(swarm.members[0])

    async def attacker_side() -> None:
        await greet(attacker, attacker_terms, deadline=trio.current_time() + 10)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await attack(attacker.stream)

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(attacker_side)
            with pytest.raises(PeerError, match=reason) as info:
                await respond(victim, Participant(model, terms))
            nursery.cancel_scope.cancel()

    assert info.value.peer == victim.peer
    refused = [entry for entry in logs if entry["event"] == "peer_refused"]
    assert len(refused) == 1
    assert refused[0]["peer"] == victim.peer
    assert swarm.members[0].node_id.startswith(victim.peer)
    assert np.array_equal(model.params, params)
    assert np.array_equal(model.residual, residual)
    assert not model.in_exchange
    with pytest.raises(trio.ClosedResourceError):
        await victim.stream.send_all(b"x")


async def test_a_peer_that_vanishes_before_committing_changes_nothing(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    attacker, victim = await tls_pair(swarm.members[0], swarm.members[1])
    model, terms = model_and_terms(swarm.members[1])
    params = model.params.copy()
    _, attacker_terms = model_and_terms(swarm.members[0])

    async def attacker_side() -> None:
        await greet(attacker, attacker_terms, deadline=trio.current_time() + 10)
        await attacker.send(
            Exchange(1, encode_indices(GOOD_INDICES, DIM), encode_values(GOOD_VALUES))
        )
        assert isinstance(await attacker.receive(), ExchangeReply)
        await attacker.stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attacker_side)
        with pytest.raises(PeerError, match="closed the connection in state await_commit"):
            await respond(victim, Participant(model, terms))
    assert np.array_equal(model.params, params)


async def test_honest_members_exchange_and_preserve_the_sum(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    a_channel, b_channel = await tls_pair(swarm.members[0], swarm.members[1])
    a_model, a_terms = model_and_terms(swarm.members[0], seed=1)
    b_model, b_terms = model_and_terms(swarm.members[1], seed=2)
    total = a_model.params + b_model.params

    merged: list[str] = []

    async def initiator() -> None:
        deadline = trio.current_time() + 10
        await greet(a_channel, a_terms, deadline=deadline)
        result = await initiate(
            a_channel,
            Participant(a_model, a_terms),
            k=100,
            xid=7,
            rng=np.random.default_rng(0),
            deadline=deadline,
        )
        assert result.outcome is Outcome.MERGED
        assert result.indices.size == 100
        await a_channel.send(Bye("done"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(respond, b_channel, Participant(b_model, b_terms, merged=merged.append))
        await initiator()
    assert merged == [swarm.members[0].node_id]
    assert np.allclose(a_model.params + b_model.params, total, atol=1e-5)
    assert not np.array_equal(a_model.params, model_and_terms(swarm.members[0], seed=1)[0].params)


async def test_a_member_claiming_another_node_id_in_hello_is_refused(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    impostor, victim = await tls_pair(swarm.members[0], swarm.members[1])
    model, terms = model_and_terms(swarm.members[1])
    _, other_terms = model_and_terms(swarm.members[2])  # hello of member 2, certificate of member 0

    async def impostor_side() -> None:
        with contextlib.suppress(PeerError):
            await greet(impostor, other_terms, deadline=trio.current_time() + 10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(impostor_side)
        with pytest.raises(PeerError, match="hello names another node than its certificate"):
            await respond(victim, Participant(model, terms))


async def test_a_member_with_another_initial_model_is_refused_at_hello(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    a_channel, b_channel = await tls_pair(swarm.members[0], swarm.members[1])
    _, a_terms = model_and_terms(swarm.members[0])
    b_model, b_terms = model_and_terms(swarm.members[1])
    other = dataclasses.replace(a_terms.hello, model_hash=b"\x00" * 32)
    a_terms = dataclasses.replace(a_terms, hello=other)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _expect_peer_error, respond(b_channel, Participant(b_model, b_terms))
            )
            with pytest.raises(PeerError, match="refused us at hello: initial model differs"):
                await greet(a_channel, a_terms, deadline=trio.current_time() + 10)
    reasons = [e["reason"] for e in logs if e["event"] == "peer_refused"]
    assert any("refused at hello: initial model differs" in r for r in reasons)


async def _expect_peer_error(call: Awaitable[None]) -> None:
    with pytest.raises(PeerError):
        await call


async def test_an_initiator_refuses_a_reply_beyond_the_bound_and_commits_nothing(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    ours, attacker = await tls_pair(swarm.members[0], swarm.members[1])
    model, terms = model_and_terms(swarm.members[0])
    params, residual = model.params.copy(), model.residual.copy()
    _, attacker_terms = model_and_terms(swarm.members[1])
    after_reply: list[Message | None] = []

    async def attacker_side() -> None:
        hello = await attacker.receive()
        await attacker.send(attacker_terms.hello)
        request = await attacker.receive()
        assert isinstance(request, Exchange), hello
        count = len(request.values) // 4
        poison = np.full(count, 1e30, np.float32).astype("<f4").tobytes()
        await attacker.stream.send_all(_raw(ExchangeReply(request.xid, poison)))
        try:
            after_reply.append(await attacker.receive())
        except PeerError:
            after_reply.append(None)  # hung up, as it should

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(attacker_side)
            deadline = trio.current_time() + 10
            await greet(ours, terms, deadline=deadline)
            with pytest.raises(PeerError, match="refused reply to exchange 3: a value"):
                await initiate(
                    ours,
                    Participant(model, terms),
                    k=20,
                    xid=3,
                    rng=np.random.default_rng(0),
                    deadline=deadline,
                )
    assert after_reply == [None]  # no commit: the attacker cannot merge either
    assert np.array_equal(model.params, params)
    assert np.array_equal(model.residual, residual)
    assert not model.in_exchange
    assert any(e["event"] == "peer_refused" and e["peer"] == ours.peer for e in logs)


async def test_a_joiner_refuses_a_poisoned_model(
    swarm: Swarm, autojump_clock: trio.testing.MockClock
) -> None:
    ours, attacker = await tls_pair(swarm.members[0], swarm.members[1])
    model, terms = model_and_terms(swarm.members[0])
    _, attacker_terms = model_and_terms(swarm.members[1])

    async def attacker_side() -> None:
        await attacker.receive()
        await attacker.send(attacker_terms.hello)
        assert isinstance(await attacker.receive(), ModelRequest)
        poison = np.full(DIM, 3e38, np.float32)
        poison[0] = 0.0
        await attacker.send(Model(encode_values(poison, "float32")))
        with contextlib.suppress(PeerError):
            await attacker.receive()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attacker_side)
        deadline = trio.current_time() + 10
        await greet(ours, terms, deadline=deadline)
        with pytest.raises(PeerError, match="refused model: a value of magnitude 3e\\+38"):
            await pull_model(ours, Participant(model, terms), deadline=deadline)
