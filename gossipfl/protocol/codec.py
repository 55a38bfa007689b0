"""msgpack encoding of messages, strict on the way in.

A message is a msgpack map ``{"v": version, "type": name, **fields}``.
Decoding untrusted bytes refuses anything else: not a map, unknown or
missing keys, a wrong version, a wrong field type, and (through the
unpacker's limits) long strings, any array, ext types and deep nesting.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final, get_type_hints

import msgpack

from gossipfl.protocol.errors import LocalProtocolError, RemoteProtocolError
from gossipfl.protocol.messages import MESSAGE_TYPES, PROTOCOL_VERSION, Message

_BY_NAME: Final = {cls.TYPE: cls for cls in MESSAGE_TYPES}
_FIELDS: Final = {
    cls: {f.name: get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}
    for cls in MESSAGE_TYPES
}
MAX_STR_LEN: Final = 256
_MAX_MAP_LEN: Final = 16
# Integers on the wire are ids, sizes, ports and counters: 64-bit unsigned.
_MAX_INT: Final = 2**64 - 1


def encode_message(message: Message) -> bytes:
    """The msgpack bytes of ``message`` (no frame header)."""
    if type(message) not in _FIELDS:
        raise LocalProtocolError(f"not a protocol message: {message!r}")
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": message.TYPE}
    for name in _FIELDS[type(message)]:
        body[name] = getattr(message, name)
    try:
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return packed
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {message.TYPE}: {exc}") from exc


def decode_message(payload: bytes | bytearray, max_bin_len: int) -> Message:
    """Decode and validate one message; raises :class:`RemoteProtocolError`."""
    try:
        body = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            use_list=False,
            max_str_len=MAX_STR_LEN,
            max_bin_len=max_bin_len,
            max_array_len=0,
            max_map_len=_MAX_MAP_LEN,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise RemoteProtocolError(f"undecodable message: {type(exc).__name__}: {exc}") from None
    if not isinstance(body, dict):
        raise RemoteProtocolError(f"message is a {type(body).__name__}, not a map")
    version = body.get("v")
    if version != PROTOCOL_VERSION:
        raise RemoteProtocolError(
            f"protocol version {version!r}, this node speaks {PROTOCOL_VERSION}"
        )
    name = body.get("type")
    cls = _BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {name!r}")
    fields = _FIELDS[cls]
    keys = set(body) - {"v", "type"}
    if keys != set(fields):
        missing, extra = sorted(set(fields) - keys), sorted(map(str, keys - set(fields)))
        raise RemoteProtocolError(f"{name}: missing fields {missing}, unexpected {extra}")
    values: dict[str, Any] = {}
    for key, expected in fields.items():
        values[key] = _check_field(cls.TYPE, key, body[key], expected)
    return cls(**values)


def _check_field(message: str, key: str, value: object, expected: object) -> object:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or isinstance(value, bool):  # type: ignore[arg-type]
        raise RemoteProtocolError(
            f"{message}.{key} must be {getattr(expected, '__name__', expected)}, "
            f"got {type(value).__name__}"
        )
    if isinstance(value, int) and not 0 <= value <= _MAX_INT:
        raise RemoteProtocolError(f"{message}.{key} out of range: {value}")
    if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
        raise RemoteProtocolError(f"{message}.{key} must be finite and non-negative")
    return value
