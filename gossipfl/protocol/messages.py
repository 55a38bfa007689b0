"""The message types of the wire protocol (DESIGN.md section 4).

Plain frozen dataclasses with only ``int``, ``float``, ``str`` and ``bytes``
fields; tensors and index sets are ``bytes`` (msgpack ``bin``), whose
meaning the layers above give them.  Only :mod:`gossipfl.protocol.codec`
knows msgpack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

PROTOCOL_VERSION: Final = 4  # 4: held_s in exchange_reply and busy; peers samples


@dataclass(frozen=True)
class Hello:
    """First message each way: who I am and what model I train."""

    TYPE: ClassVar[str] = "hello"
    node_id: str  # SHA-256 of the certificate's SPKI, hex
    swarm_id: str
    trainer: str
    compressor: str  # its name, and its wire parameters if it has any
    value_dtype: str  # of exchanged values: both sides must use the same
    dim: int  # model size in coordinates
    model_hash: bytes  # SHA-256 of the initial model
    listen_port: int
    # The sender's fastest measured link, bytes/s (0: none measured yet): a
    # partner on a much slower link knows it would tie the sender up.
    capacity: float = 0.0
    # Peer exchange: a sample of peers the sender proved, 38 bytes each
    # (gossipfl.topology.peer_sample).
    peers: bytes = b""


@dataclass(frozen=True)
class Exchange:
    """Initiator to responder: the index set S (compressor-specific bytes)
    and ``x_i[S]``."""

    TYPE: ClassVar[str] = "exchange"
    xid: int
    indices: bytes
    values: bytes
    # Peer exchange, as in Hello, every so often (a channel lives long and
    # its hello is sent once): empty on most exchanges.
    peers: bytes = b""


@dataclass(frozen=True)
class ExchangeReply:
    """Responder to initiator: ``x_j[S]``."""

    TYPE: ClassVar[str] = "exchange_reply"
    xid: int
    values: bytes
    # How long the request waited for the responder's exchange slot: the
    # initiator leaves it out of the round trip it times (a link estimate).
    held_s: float = 0.0
    peers: bytes = b""  # as in Exchange


@dataclass(frozen=True)
class ExchangeCommit:
    """Initiator to responder: I merged; now you may merge."""

    TYPE: ClassVar[str] = "exchange_commit"
    xid: int


@dataclass(frozen=True)
class Busy:
    """Refusal of an exchange or model request; try again after a while."""

    TYPE: ClassVar[str] = "busy"
    retry_after: float
    held_s: float = 0.0  # as in ExchangeReply: the request waited, in vain


@dataclass(frozen=True)
class ModelRequest:
    """A late joiner asks for one full model."""

    TYPE: ClassVar[str] = "model_request"


@dataclass(frozen=True)
class Model:
    """The full model, raw float32 little-endian."""

    TYPE: ClassVar[str] = "model"
    values: bytes


@dataclass(frozen=True)
class Bye:
    """Orderly goodbye, with a reason for the peer's log."""

    TYPE: ClassVar[str] = "bye"
    reason: str


Message = Hello | Exchange | ExchangeReply | ExchangeCommit | Busy | ModelRequest | Model | Bye
MESSAGE_TYPES: Final[tuple[type[Message], ...]] = (
    Hello,
    Exchange,
    ExchangeReply,
    ExchangeCommit,
    Busy,
    ModelRequest,
    Model,
    Bye,
)
