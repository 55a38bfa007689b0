"""The sans-IO protocol: two sessions wired back to back, no IO at all."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossipfl.protocol import (
    PROTOCOL_VERSION,
    TRANSITIONS,
    Busy,
    Bye,
    Exchange,
    ExchangeCommit,
    ExchangeReply,
    FrameDecoder,
    Hello,
    LocalProtocolError,
    Message,
    Model,
    ModelRequest,
    RemoteProtocolError,
    Role,
    Session,
    State,
    decode_message,
    encode_message,
    frame,
)

LIMIT = 1 << 16
HELLO = Hello("ab" * 32, "swarm", "digits-mlp", "topk-ef", "float32", 4810, b"\x01" * 32, 7000)


class Pair:
    """Two sessions whose bytes go straight to each other."""

    def __init__(self) -> None:
        self.initiator = Session(Role.INITIATOR, LIMIT)
        self.responder = Session(Role.RESPONDER, LIMIT)

    def send(self, sender: Session, message: Message) -> Message | None:
        receiver = self.responder if sender is self.initiator else self.initiator
        receiver.receive_data(sender.send(message))
        return receiver.next_message()

    def greet(self) -> None:
        assert self.send(self.initiator, HELLO) == HELLO
        assert self.send(self.responder, HELLO) == HELLO
        assert self.initiator.state is self.responder.state is State.IDLE


def test_a_full_exchange_round_trips_every_field() -> None:
    pair = Pair()
    pair.greet()
    exchange = Exchange(1, b"\x00\x01\x00\x05", b"\x00\x00\x80\x3f")
    assert pair.send(pair.initiator, exchange) == exchange
    assert pair.responder.state is State.GOT_EXCHANGE
    assert pair.send(pair.responder, ExchangeReply(1, b"\x00" * 4)) == ExchangeReply(1, b"\x00" * 4)
    assert pair.initiator.state is State.REPLIED
    assert pair.send(pair.initiator, ExchangeCommit(1)) == ExchangeCommit(1)
    assert (pair.initiator.state, pair.responder.state) == (State.IDLE, State.IDLE)
    assert pair.responder.peer_hello == HELLO


def test_busy_and_model_pull_and_bye() -> None:
    pair = Pair()
    pair.greet()
    pair.send(pair.initiator, Exchange(2, b"", b""))
    assert pair.send(pair.responder, Busy(0.5)) == Busy(0.5)
    assert pair.initiator.state is State.IDLE
    pair.send(pair.initiator, ModelRequest())
    assert pair.send(pair.responder, Model(b"\x00" * 8)) == Model(b"\x00" * 8)
    assert pair.send(pair.responder, Bye("shutting down")) == Bye("shutting down")
    assert pair.initiator.state is pair.responder.state is State.CLOSED


def test_messages_split_across_reads_reassemble() -> None:
    pair = Pair()
    data = pair.initiator.send(HELLO) + b""
    for byte in data:
        assert pair.responder.next_message() is None
        pair.responder.receive_data(bytes([byte]))
    assert pair.responder.next_message() == HELLO


@pytest.mark.parametrize(
    ("sender_role", "message"),
    [
        (Role.INITIATOR, Exchange(1, b"", b"")),  # before hello
        (Role.RESPONDER, HELLO),  # responder speaks first
        (Role.INITIATOR, ExchangeCommit(1)),
        (Role.RESPONDER, ExchangeReply(1, b"")),
    ],
)
def test_sending_out_of_order_is_local_misuse(sender_role: Role, message: Message) -> None:
    with pytest.raises(LocalProtocolError, match="cannot send"):
        Session(sender_role, LIMIT).send(message)


def _raw(message: Message) -> bytes:
    return frame(encode_message(message), LIMIT)


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([Exchange(1, b"", b"")], "unexpected exchange in state start"),
        ([HELLO, ExchangeCommit(9)], "unexpected exchange_commit in state idle"),
        (
            [HELLO, Exchange(1, b"", b""), Exchange(2, b"", b"")],
            "unexpected exchange in state got_exchange",
        ),
        ([HELLO, HELLO], "unexpected hello"),
    ],
)
def test_out_of_order_messages_from_the_peer_are_refused(
    messages: list[Message], reason: str
) -> None:
    def play() -> None:
        responder = Session(Role.RESPONDER, LIMIT)
        for message in messages:
            responder.receive_data(_raw(message))
            responder.next_message()
            if responder.state is State.GREET:
                responder.send(HELLO)

    with pytest.raises(RemoteProtocolError, match=reason):
        play()


def test_a_commit_for_another_exchange_is_refused() -> None:
    pair = Pair()
    pair.greet()
    pair.send(pair.initiator, Exchange(5, b"", b""))
    pair.send(pair.responder, ExchangeReply(5, b""))
    pair.responder.receive_data(_raw(ExchangeCommit(6)))
    with pytest.raises(RemoteProtocolError, match="xid 6, the exchange is 5"):
        pair.responder.next_message()


def _feed(session: Session, data: bytes) -> Message | None:
    session.receive_data(data)
    return session.next_message()


def _body(**fields: object) -> bytes:
    return frame(msgpack.packb(fields, use_bin_type=True), LIMIT)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (frame(b"\xc1", LIMIT), "undecodable"),
        (frame(msgpack.packb([1, 2, 3]), LIMIT), "undecodable"),  # arrays are never valid
        (frame(msgpack.packb(42), LIMIT), "not a map"),
        (_body(v=PROTOCOL_VERSION + 1, type="hello"), f"protocol version {PROTOCOL_VERSION + 1}"),
        (_body(v=PROTOCOL_VERSION, type="gimme"), "unknown message type 'gimme'"),
        (_body(v=PROTOCOL_VERSION, type="bye"), "missing fields \\['reason'\\]"),
        (_body(v=PROTOCOL_VERSION, type="bye", reason="x", extra=1), "unexpected \\['extra'\\]"),
        (
            _body(v=PROTOCOL_VERSION, type="busy", retry_after="soon", held_s=0.0),
            "busy.retry_after must be float",
        ),
        (_body(v=PROTOCOL_VERSION, type="busy", retry_after=float("nan"), held_s=0.0), "finite"),
        (_body(v=PROTOCOL_VERSION, type="busy", retry_after=0.1, held_s=-1.0), "non-negative"),
        (_body(v=PROTOCOL_VERSION, type="exchange_commit", xid=-1), "out of range"),
        (_body(v=PROTOCOL_VERSION, type="exchange_commit", xid=True), "must be int"),
        (_body(v=PROTOCOL_VERSION, type="model", values="text, not bin"), "must be bytes"),
        (_body(v=PROTOCOL_VERSION, type="bye", reason="x" * 300), "undecodable"),
        (b"\xff\xff\xff\xff", "4294967295 bytes announced"),
    ],
)
def test_malformed_frames_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError, match=reason):
        _feed(Session(Role.RESPONDER, LIMIT), data)


def test_a_stream_that_ends_inside_a_frame_is_refused() -> None:
    session = Session(Role.RESPONDER, LIMIT)
    session.receive_data(_raw(HELLO)[:-3])
    assert session.next_message() is None
    session.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed inside a frame"):
        session.next_message()


def test_an_oversized_frame_is_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=1000)
    with pytest.raises(RemoteProtocolError, match="1001 bytes announced, limit is 1000"):
        decoder.receive_data(b"\x00\x00\x03\xe9")
    assert decoder.pending == 4


def test_reading_a_closed_session_is_our_mistake_not_the_peers() -> None:
    pair = Pair()
    pair.greet()
    pair.send(pair.initiator, Bye("done"))
    assert pair.responder.state is State.CLOSED
    with pytest.raises(LocalProtocolError, match="session is closed"):
        pair.responder.next_message()


def test_every_transition_names_a_message_type() -> None:
    types = {
        cls.TYPE
        for cls in (Hello, Exchange, ExchangeReply, ExchangeCommit, Busy, ModelRequest, Model)
    }
    assert {kind for (_, _, _, kind) in TRANSITIONS} == types


# -- fuzz: nothing but RemoteProtocolError ever escapes ------------------------------

messages = st.one_of(
    st.builds(Hello, st.text(max_size=70), st.text(max_size=20), st.text(max_size=20),
              st.text(max_size=20), st.text(max_size=10), st.integers(0, 2**40),
              st.binary(max_size=40), st.integers(0, 65535)),
    st.builds(Exchange, st.integers(0, 2**63), st.binary(max_size=64), st.binary(max_size=64)),
    st.builds(ExchangeReply, st.integers(0, 2**63), st.binary(max_size=64)),
    st.builds(ExchangeCommit, st.integers(0, 2**63)),
    st.builds(Busy, st.floats(0, 1e6)),
    st.just(ModelRequest()),
    st.builds(Model, st.binary(max_size=64)),
    st.builds(Bye, st.text(max_size=50)),
)  # fmt: skip


@given(st.lists(messages, max_size=6), st.sampled_from(list(Role)))
def test_valid_frames_in_any_order_raise_only_remote_errors(
    sequence: list[Message], role: Role
) -> None:
    session = Session(role, LIMIT)
    try:
        for message in sequence:
            session.receive_data(frame(encode_message(message), LIMIT))
            assert session.next_message() == message
            if session.state is State.CLOSED:  # after bye nothing more is read
                break
    except RemoteProtocolError:
        return


@given(st.lists(messages, min_size=1, max_size=4), st.data())
def test_mutated_frames_raise_only_remote_errors(
    sequence: list[Message], data: st.DataObject
) -> None:
    stream = bytearray(b"".join(frame(encode_message(m), LIMIT) for m in sequence))
    for _ in range(data.draw(st.integers(1, 6))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    session = Session(data.draw(st.sampled_from(list(Role))), LIMIT)
    try:
        session.receive_data(bytes(stream))
        session.receive_data(b"")
        while session.state is not State.CLOSED and session.next_message() is not None:
            pass
    except RemoteProtocolError:
        return


@given(st.binary(max_size=200))
def test_random_payloads_decode_or_raise_remote_error(payload: bytes) -> None:
    try:
        decode_message(payload, LIMIT)
    except RemoteProtocolError:
        return


@pytest.mark.parametrize("size", [0, 255, 256, 65535, 65536, 1 << 20])
def test_frames_are_exactly_what_msgpack_would_write(size: int) -> None:
    message = Model(bytes(range(256)) * (size // 256) + b"\x07" * (size % 256))
    body = {"v": PROTOCOL_VERSION, "type": "model", "values": message.values}
    assert encode_message(message) == msgpack.packb(body, use_bin_type=True)
    assert decode_message(encode_message(message), 2 << 20) == message
