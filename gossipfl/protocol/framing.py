"""Length-prefixed frames: a 4-byte big-endian length, then the payload.

:class:`FrameDecoder` is sans-IO: feed it bytes as they arrive and take
whole frames out.  A length above the connection's limit is refused as soon
as its 4 bytes are in, before anything is allocated or buffered for it.
"""

from __future__ import annotations

import struct
from typing import Final

from gossipfl.protocol.errors import LocalProtocolError, RemoteProtocolError

HEADER: Final = struct.Struct(">I")


def frame(payload: bytes, max_frame_bytes: int) -> bytes:
    """Prefix ``payload`` with its length; refuses oversized payloads."""
    if len(payload) > max_frame_bytes:
        raise LocalProtocolError(
            f"frame of {len(payload)} bytes exceeds max_frame_bytes = {max_frame_bytes}"
        )
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Reassembles frames from a byte stream."""

    def __init__(self, max_frame_bytes: int) -> None:
        if not 0 < max_frame_bytes < 2**32:
            raise ValueError("max_frame_bytes must be in 1..2**32-1")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._eof = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the stream; ``b""`` means the peer closed it."""
        if self._eof and data:
            raise LocalProtocolError("data after end of stream")
        if not data:
            self._eof = True
            return
        self._buffer += data
        self._check_header()

    def _check_header(self) -> None:
        if len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > self.max_frame_bytes:
                raise RemoteProtocolError(
                    f"frame of {length} bytes announced, limit is {self.max_frame_bytes}"
                )

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def next_frame(self) -> bytes | None:
        """The next whole frame, or ``None`` if more data is needed.

        Raises :class:`RemoteProtocolError` when the stream ended inside a
        frame.
        """
        if len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            end = HEADER.size + length
            if len(self._buffer) >= end:
                payload = bytes(self._buffer[HEADER.size : end])
                del self._buffer[:end]
                self._check_header()
                return payload
        if self._eof and self._buffer:
            raise RemoteProtocolError(f"stream closed inside a frame ({len(self._buffer)} bytes)")
        return None

    @property
    def closed(self) -> bool:
        """The peer closed the stream and every frame has been taken."""
        return self._eof and not self._buffer
