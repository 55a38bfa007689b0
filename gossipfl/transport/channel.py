"""A message channel: a (secure) trio Stream + framing + codec, driven by
the sans-IO :class:`~gossipfl.protocol.Session`.

Every read and write has a deadline.  Whatever the peer does wrong
(malformed or oversized frames, messages out of order, stalling mid-frame,
vanishing) closes this channel only, is logged once with the peer's name and
the reason, and surfaces as :class:`PeerError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import structlog
import trio

from gossipfl.protocol import Message, RemoteProtocolError, Session

# Large reads: one receive_some per 256 KiB keeps per-call overhead (and
# TLS record handling) small next to the copy.
_READ_SIZE = 1 << 18
# Writes go out in slices: TLS encrypts a whole send_all into one buffer
# before any of it is sent, which for a 20 MiB model leaves the cache and
# costs a third of the throughput (bench/transport.py, 20 MiB over TLS:
# 179 MB/s in one piece, 265 MB/s in 1 MiB slices).
_WRITE_SIZE = 1 << 20
log = structlog.get_logger("gossipfl.transport")


class PeerError(Exception):
    """The peer broke the protocol, stalled or went away.  The channel is
    closed; ``peer`` and ``reason`` say who and why."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"peer {peer}: {reason}")
        self.peer = peer
        self.reason = reason


@dataclass(frozen=True)
class Timeouts:
    """Seconds.  ``idle`` bounds the wait for the first byte of the next
    message on a reused connection; ``read`` bounds the rest of a message
    once it has started; ``write`` bounds one send; ``handshake`` the TLS
    handshake."""

    idle: float = 120.0
    read: float = 30.0
    write: float = 30.0
    handshake: float = 10.0


@dataclass
class Traffic:
    """Bytes moved, shared by every channel of a node."""

    sent: int = 0
    received: int = 0


class MessageChannel:
    """``peer`` names the other side in logs; ``node_id`` is its
    authenticated node id (from its certificate) when known."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        session: Session,
        peer: str,
        timeouts: Timeouts,
        *,
        node_id: str | None = None,
        traffic: Traffic | None = None,
    ) -> None:
        self.stream = stream
        self.session = session
        self.peer = peer
        self.node_id = node_id
        self.timeouts = timeouts
        self.traffic = traffic if traffic is not None else Traffic()
        self.bytes_sent = 0
        self.bytes_received = 0
        self._closed = False

    async def send(self, message: Message) -> None:
        """Send one message.  Local misuse raises
        :class:`~gossipfl.protocol.LocalProtocolError`; a peer that does not
        take the bytes within the write deadline gets :class:`PeerError`."""
        data = self.session.send(message)
        try:
            with trio.fail_after(self.timeouts.write):
                view = memoryview(data)
                for start in range(0, len(view), _WRITE_SIZE):
                    await self.stream.send_all(view[start : start + _WRITE_SIZE])
        except trio.TooSlowError:
            await self.reject(f"did not accept {message.TYPE} within {self.timeouts.write:g}s")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await self.reject(f"connection lost while sending {message.TYPE} ({_cause(exc)})")
        self.bytes_sent += len(data)
        self.traffic.sent += len(data)

    async def receive(self) -> Message:
        """The next message from the peer; raises :class:`PeerError`."""
        started = False
        deadline = trio.current_time() + self.timeouts.idle
        while True:
            try:
                message = self.session.next_message()
            except RemoteProtocolError as exc:
                await self.reject(str(exc))
            if message is not None:
                return message
            if not started and self.session.receiving:
                started = True
                deadline = trio.current_time() + self.timeouts.read
            try:
                with trio.fail_at(deadline):
                    data = await self.stream.receive_some(_READ_SIZE)
            except trio.TooSlowError:
                if started:
                    await self.reject(
                        f"stalled: no complete message within {self.timeouts.read:g}s"
                    )
                await self.reject(f"idle for {self.timeouts.idle:g}s")
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                await self.reject(f"connection lost ({_cause(exc)})")
            self.bytes_received += len(data)
            self.traffic.received += len(data)
            try:
                self.session.receive_data(data)
            except RemoteProtocolError as exc:
                await self.reject(str(exc))

    async def reject(self, reason: str) -> NoReturn:
        """Log why the peer is refused, close the channel, raise PeerError."""
        log.warning("peer_refused", peer=self.peer, reason=reason)
        await self.aclose()
        raise PeerError(self.peer, reason)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await trio.aclose_forcefully(self.stream)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return str(cause or exc) or type(exc).__name__
