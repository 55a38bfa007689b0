"""The exchange state machine: one connection, seen from one side.

Rules this file keeps:

* The dialer is the **initiator**, the listener the **responder**; roles
  never swap on a connection.
* Each side says ``hello`` once, the initiator first.  The responder reads
  the initiator's hello before it answers with its own (or ``bye``), so it
  can refuse a peer of another swarm or model.
* One exchange at a time: ``exchange`` -> ``exchange_reply`` ->
  ``exchange_commit``, all with the same ``xid``; or ``exchange`` -> ``busy``.
* A late joiner's ``model_request`` is answered by ``model`` or ``busy``.
* ``bye`` may be sent or received in any state and closes the session.
* Anything else is an error: :class:`LocalProtocolError` when we send it,
  :class:`RemoteProtocolError` when the peer does.

Every legal move is in :data:`TRANSITIONS`.  The session does no IO:
:meth:`Session.send` returns bytes to write, :meth:`Session.receive_data`
takes bytes read, :meth:`Session.next_message` returns what they held.
"""

from __future__ import annotations

import enum
from typing import Final

from gossipfl.protocol.codec import decode_message, encode_frame
from gossipfl.protocol.errors import LocalProtocolError, RemoteProtocolError
from gossipfl.protocol.framing import FrameDecoder
from gossipfl.protocol.messages import (
    Bye,
    Exchange,
    ExchangeCommit,
    ExchangeReply,
    Hello,
    Message,
)


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class State(enum.Enum):
    START = "start"  # nothing said yet
    AWAIT_HELLO = "await_hello"  # initiator: said hello, waiting for theirs
    GREET = "greet"  # responder: heard hello, owes hello (or bye)
    IDLE = "idle"
    AWAIT_REPLY = "await_reply"  # initiator: sent exchange
    REPLIED = "replied"  # initiator: got the reply, owes the commit
    GOT_EXCHANGE = "got_exchange"  # responder: owes a reply or busy
    AWAIT_COMMIT = "await_commit"  # responder: replied, waiting for commit
    AWAIT_MODEL = "await_model"  # initiator: sent model_request
    GOT_MODEL_REQUEST = "got_model_request"  # responder: owes model or busy
    CLOSED = "closed"


class Direction(enum.Enum):
    SEND = "send"
    RECEIVE = "receive"


INIT, RESP = Role.INITIATOR, Role.RESPONDER
SEND, RECEIVE = Direction.SEND, Direction.RECEIVE
S = State

TRANSITIONS: Final[dict[tuple[Role, State, Direction, str], State]] = {
    # greeting
    (INIT, S.START, SEND, "hello"): S.AWAIT_HELLO,
    (INIT, S.AWAIT_HELLO, RECEIVE, "hello"): S.IDLE,
    (RESP, S.START, RECEIVE, "hello"): S.GREET,
    (RESP, S.GREET, SEND, "hello"): S.IDLE,
    # sparse exchange
    (INIT, S.IDLE, SEND, "exchange"): S.AWAIT_REPLY,
    (INIT, S.AWAIT_REPLY, RECEIVE, "exchange_reply"): S.REPLIED,
    (INIT, S.AWAIT_REPLY, RECEIVE, "busy"): S.IDLE,
    (INIT, S.REPLIED, SEND, "exchange_commit"): S.IDLE,
    (RESP, S.IDLE, RECEIVE, "exchange"): S.GOT_EXCHANGE,
    (RESP, S.GOT_EXCHANGE, SEND, "exchange_reply"): S.AWAIT_COMMIT,
    (RESP, S.GOT_EXCHANGE, SEND, "busy"): S.IDLE,
    (RESP, S.AWAIT_COMMIT, RECEIVE, "exchange_commit"): S.IDLE,
    # dense pull for a late joiner
    (INIT, S.IDLE, SEND, "model_request"): S.AWAIT_MODEL,
    (INIT, S.AWAIT_MODEL, RECEIVE, "model"): S.IDLE,
    (INIT, S.AWAIT_MODEL, RECEIVE, "busy"): S.IDLE,
    (RESP, S.IDLE, RECEIVE, "model_request"): S.GOT_MODEL_REQUEST,
    (RESP, S.GOT_MODEL_REQUEST, SEND, "model"): S.IDLE,
    (RESP, S.GOT_MODEL_REQUEST, SEND, "busy"): S.IDLE,
}


def next_state(role: Role, state: State, direction: Direction, kind: str) -> State | None:
    """The state after ``direction`` ``kind`` in ``state``, or ``None`` if
    that move is illegal.  ``bye`` closes any open state."""
    if state is State.CLOSED:
        return None
    if kind == Bye.TYPE:
        return State.CLOSED
    return TRANSITIONS.get((role, state, direction, kind))


class Session:
    """One side of one connection."""

    def __init__(self, role: Role, max_frame_bytes: int) -> None:
        self.role = role
        self.state = State.START
        self.max_frame_bytes = max_frame_bytes
        self.peer_hello: Hello | None = None
        self.xid: int | None = None  # of the exchange in flight
        self._decoder = FrameDecoder(max_frame_bytes)

    def send(self, message: Message) -> bytearray:
        """Advance the state for sending ``message``; return the framed bytes."""
        after = next_state(self.role, self.state, SEND, message.TYPE)
        if after is None:
            raise LocalProtocolError(
                f"{self.role.value} cannot send {message.TYPE} in state {self.state.value}"
            )
        if isinstance(message, Exchange):
            self.xid = message.xid
        elif isinstance(message, ExchangeReply | ExchangeCommit) and message.xid != self.xid:
            raise LocalProtocolError(
                f"{message.TYPE} for xid {message.xid}, the exchange is {self.xid}"
            )
        data = encode_frame(message, self.max_frame_bytes)
        self.state = after
        return data

    @property
    def receiving(self) -> bool:
        """Part of a frame has arrived, but not all of it."""
        return self._decoder.pending > 0

    @property
    def incoming_frame_bytes(self) -> int:
        """Size of the frame now arriving, once its header is in (else 0)."""
        return self._decoder.announced

    @property
    def peer_closed_cleanly(self) -> bool:
        """The peer closed the stream between messages (not inside one)."""
        return self._decoder.closed

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes read from the stream; ``b""`` when the peer closed it."""
        self._decoder.receive_data(data)

    def next_message(self) -> Message | None:
        """The next message the peer sent, or ``None`` until more bytes arrive.

        Raises :class:`RemoteProtocolError` for anything malformed or out of
        order, or the stream's end; the session is then unusable.  Reading
        a closed session is :class:`LocalProtocolError`: after ``bye`` there
        is nothing more to read, and waiting for it would never end.
        """
        if self.state is State.CLOSED:
            raise LocalProtocolError("the session is closed; nothing more will arrive")
        payload = self._decoder.next_frame()
        if payload is None:
            if self._decoder.closed:
                raise RemoteProtocolError(f"peer closed the connection in state {self.state.value}")
            return None
        message = decode_message(payload, self.max_frame_bytes)
        after = next_state(self.role, self.state, RECEIVE, message.TYPE)
        if after is None:
            state, self.state = self.state, State.CLOSED
            raise RemoteProtocolError(
                f"unexpected {message.TYPE} in state {state.value} of the {self.role.value}"
            )
        if isinstance(message, Hello):
            self.peer_hello = message
        elif isinstance(message, Exchange):
            self.xid = message.xid
        elif isinstance(message, ExchangeReply | ExchangeCommit) and message.xid != self.xid:
            self.state = State.CLOSED
            raise RemoteProtocolError(
                f"{message.TYPE} for xid {message.xid}, the exchange is {self.xid}"
            )
        self.state = after
        return message
