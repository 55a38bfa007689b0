"""Sans-IO wire protocol: message types, msgpack codec, framing and the
exchange state machine.  Imports no trio, socket, ssl or zeroconf."""

from gossipfl.protocol.codec import decode_message, encode_message
from gossipfl.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from gossipfl.protocol.framing import FrameDecoder, frame
from gossipfl.protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
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
from gossipfl.protocol.session import TRANSITIONS, Role, Session, State

__all__ = [
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "TRANSITIONS",
    "Busy",
    "Bye",
    "Exchange",
    "ExchangeCommit",
    "ExchangeReply",
    "FrameDecoder",
    "Hello",
    "LocalProtocolError",
    "Message",
    "Model",
    "ModelRequest",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "Session",
    "State",
    "decode_message",
    "encode_message",
    "frame",
]
