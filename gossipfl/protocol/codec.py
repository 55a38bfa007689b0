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
from gossipfl.protocol.framing import HEADER
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


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _parts(message: Message) -> list[bytes]:
    """The message as msgpack pieces.  ``bytes`` fields (tensors of up to
    hundreds of MiB) are left as they are behind a hand-written ``bin``
    header, so assembling a frame copies each of them exactly once."""
    if type(message) not in _FIELDS:
        raise LocalProtocolError(f"not a protocol message: {message!r}")
    fields = _FIELDS[type(message)]
    parts = [bytes([0x80 | (len(fields) + 2)])]  # fixmap: at most 15 entries
    try:
        parts.append(msgpack.packb("v") + msgpack.packb(PROTOCOL_VERSION))
        parts.append(msgpack.packb("type") + msgpack.packb(message.TYPE))
        for name in fields:
            value = getattr(message, name)
            parts.append(msgpack.packb(name))
            if isinstance(value, bytes):
                parts += (_bin_header(len(value)), value)
            else:
                parts.append(msgpack.packb(value))
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {message.TYPE}: {exc}") from exc
    return parts


def encode_message(message: Message) -> bytes:
    """The msgpack bytes of ``message`` (no frame header)."""
    return b"".join(_parts(message))


def encode_frame(message: Message, max_frame_bytes: int) -> bytearray:
    """Length header and message in one buffer, each payload copied once."""
    parts = _parts(message)
    size = sum(map(len, parts))
    if size > max_frame_bytes:
        raise LocalProtocolError(
            f"{message.TYPE} of {size} bytes exceeds max_frame_bytes = {max_frame_bytes}"
        )
    out = bytearray(HEADER.size + size)
    HEADER.pack_into(out, 0, size)
    pos = HEADER.size
    for part in parts:
        out[pos : pos + len(part)] = part
        pos += len(part)
    return out


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
