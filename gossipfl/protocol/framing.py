"""Length-prefixed frames: a 4-byte big-endian length, then the payload.

:class:`FrameDecoder` is sans-IO: feed it bytes as they arrive and take
whole frames out.  A length above the connection's limit is refused as soon
as its 4 bytes are in, before anything is allocated for it.  Once a length
is accepted the body is allocated once and filled in place: TLS hands data
over in 16 KiB records, and growing a buffer per record costs more than
the decryption.
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
        self._header = bytearray()  # bytes of the next header seen so far
        self._body: bytearray | None = None  # the frame being filled
        self._filled = 0
        self._ready: list[bytearray] = []
        self._eof = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the stream; ``b""`` means the peer closed it.

        Raises :class:`RemoteProtocolError` as soon as a header announces
        more than ``max_frame_bytes``.
        """
        if self._eof and data:
            raise LocalProtocolError("data after end of stream")
        if not data:
            self._eof = True
            return
        view = memoryview(data)
        while view:
            if self._body is None:
                take = HEADER.size - len(self._header)
                self._header += view[:take]
                view = view[take:]
                if len(self._header) < HEADER.size:
                    return
                (length,) = HEADER.unpack(self._header)
                if length > self.max_frame_bytes:
                    raise RemoteProtocolError(
                        f"frame of {length} bytes announced, limit is {self.max_frame_bytes}"
                    )
                self._header.clear()
                self._body, self._filled = bytearray(length), 0
            take = min(len(view), len(self._body) - self._filled)
            self._body[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == len(self._body):
                self._ready.append(self._body)
                self._body = None

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a frame."""
        ready = sum(len(body) + HEADER.size for body in self._ready)
        partial = 0 if self._body is None else self._filled + HEADER.size
        return ready + partial + len(self._header)

    @property
    def announced(self) -> int:
        """The length announced by the frame being filled (0 between frames)."""
        return 0 if self._body is None else len(self._body)

    def next_frame(self) -> bytearray | None:
        """The next whole frame, or ``None`` if more data is needed.

        Raises :class:`RemoteProtocolError` when the stream ended inside a
        frame.
        """
        if self._ready:
            return self._ready.pop(0)
        if self._eof and (self._body is not None or self._header):
            raise RemoteProtocolError(f"stream closed inside a frame ({self.pending} bytes)")
        return None

    @property
    def closed(self) -> bool:
        """The peer closed the stream and every frame has been taken."""
        return self._eof and not self.pending
