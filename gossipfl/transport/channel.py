"""A message channel: a (secure) trio Stream + framing + codec, driven by
the sans-IO :class:`~gossipfl.protocol.Session`.

Every read and write has a deadline: either one the caller sizes to the
exchange in progress, or the channel's :class:`Timeouts`, stretched for
large messages.  Whatever the peer does wrong (malformed or oversized
frames, messages out of order, stalling mid-frame) closes this channel
only, is logged once with the peer's name and the reason, and surfaces as
:class:`PeerError`.  A peer that merely goes away (closes, resets, says
``bye``) surfaces the same way with ``went_away`` set, logged quietly: that
is not misbehaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import structlog
import trio

from gossipfl.protocol import Bye, Message, RemoteProtocolError, Session, State

# Large reads: one receive_some per 256 KiB keeps per-call overhead (and
# TLS record handling) small next to the copy.
_READ_SIZE = 1 << 18
# Writes go out in slices: TLS encrypts a whole send_all into one buffer
# before any of it is sent, which for a 20 MiB model leaves the cache and
# costs a third of the throughput (bench/transport.py, 20 MiB over TLS:
# 179 MB/s in one piece, 265 MB/s in 1 MiB slices).
_WRITE_SIZE = 1 << 20
# Without a deadline from the caller, a message of n bytes may take the
# configured timeout plus n / _SLOWEST_LINK seconds: a 40 MB model then
# still crosses a 1 Mbit/s link, while a peer stalling a small message is
# cut off after the plain timeout.
SLOWEST_LINK_BPS = 125_000.0
log = structlog.get_logger("gossipfl.transport")


class PeerError(Exception):
    """The peer broke the protocol, stalled or went away.  The channel is
    closed; ``peer`` and ``reason`` say who and why.  ``went_away`` is set
    when the peer closed, reset or said ``bye`` rather than misbehaved;
    ``timed_out`` when a deadline ran out."""

    def __init__(
        self, peer: str, reason: str, *, went_away: bool = False, timed_out: bool = False
    ) -> None:
        super().__init__(f"peer {peer}: {reason}")
        self.peer = peer
        self.reason = reason
        self.went_away = went_away
        self.timed_out = timed_out


@dataclass(frozen=True)
class Timeouts:
    """Seconds.  ``idle`` bounds how long a responder keeps a connection
    with nothing to do; ``read`` bounds the wait for a message a peer owes
    us; ``write`` bounds one send; ``handshake`` the TCP connect plus TLS
    handshake (and the hello that follows).  Reads and writes of large
    messages get ``bytes / SLOWEST_LINK_BPS`` more."""

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
        host: str | None = None,
    ) -> None:
        self.stream = stream
        self.session = session
        self.peer = peer
        self.node_id = node_id
        self.host = host  # the remote end's address, where the network knows it
        self.timeouts = timeouts
        self.traffic = traffic if traffic is not None else Traffic()
        self.bytes_sent = 0
        self.bytes_received = 0
        self._closed = False

    async def send(self, message: Message, *, deadline: float | None = None) -> None:
        """Send one message, all of it by ``deadline`` (trio time; default:
        the write timeout, stretched for large messages).

        Local misuse raises :class:`~gossipfl.protocol.LocalProtocolError`;
        a peer that does not take the bytes in time, or is gone, gets
        :class:`PeerError`.
        """
        data = self.session.send(message)
        now = trio.current_time()
        if deadline is None:
            deadline = now + self.timeouts.write + len(data) / SLOWEST_LINK_BPS
        # A plain cancel scope, not trio.fail_at: two per message, and the
        # context-manager wrapper cost more than the scope (1000-peer simnet).
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                view = memoryview(data)
                for start in range(0, len(view), _WRITE_SIZE):
                    await self.stream.send_all(view[start : start + _WRITE_SIZE])
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await self.reject(
                f"connection lost while sending {message.TYPE} ({_cause(exc)})", went_away=True
            )
        if scope.cancelled_caught:
            await self.reject(
                f"did not take {message.TYPE} within {deadline - now:.3g}s", timed_out=True
            )
        self.bytes_sent += len(data)
        self.traffic.sent += len(data)

    async def receive(
        self, *, deadline: float | None = None, waiting_for: str = "a message"
    ) -> Message:
        """The next message, complete by ``deadline`` (trio time; default:
        the read timeout, stretched once a large message starts arriving).
        ``waiting_for`` names it in the reason when it does not come.

        Raises :class:`PeerError`; a ``bye`` is returned like any message,
        and reading again after it raises at once.
        """
        now = trio.current_time()
        explicit = deadline is not None
        if deadline is None:
            deadline = now + self.timeouts.read
        message = await self._read(deadline, stretch=not explicit)
        if message is None:
            await self.reject(f"sent no {waiting_for} within {deadline - now:.3g}s", timed_out=True)
        return message

    async def next_request(self) -> Message | None:
        """Responder: the peer's next message, or ``None`` when it has sent
        nothing for the idle timeout (the caller then says bye and closes).
        A message once started must complete as in :meth:`receive`."""
        return await self._read(trio.current_time() + self.timeouts.idle, stretch=True)

    async def _read(self, first_byte_by: float, *, stretch: bool) -> Message | None:
        """A message, or ``None`` if not one byte of it came by
        ``first_byte_by``.  With ``stretch``, a message that has started may
        take the read timeout plus its size at the slowest link."""
        if self.session.state is State.CLOSED:
            await self.reject("read after the session closed", went_away=True)
        deadline, started, started_at = first_byte_by, False, 0.0
        while True:
            try:
                message = self.session.next_message()
            except RemoteProtocolError as exc:
                await self.reject(str(exc), went_away=self.session.peer_closed_cleanly)
            if message is not None:
                return message
            if not started and self.session.receiving:
                started, started_at = True, trio.current_time()
                if stretch:
                    size = self.session.incoming_frame_bytes
                    deadline = trio.current_time() + self.timeouts.read + size / SLOWEST_LINK_BPS
            data: bytes | bytearray = b""
            try:
                with trio.CancelScope(deadline=deadline) as scope:
                    data = await self.stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                await self.reject(f"connection lost ({_cause(exc)})", went_away=not started)
            if scope.cancelled_caught:
                if not started:
                    return None
                waited = trio.current_time() - started_at
                await self.reject(
                    f"stalled: message incomplete after {waited:.3g}s", timed_out=True
                )
            self.bytes_received += len(data)
            self.traffic.received += len(data)
            try:
                self.session.receive_data(data)
            except RemoteProtocolError as exc:
                await self.reject(str(exc))

    async def reject(
        self, reason: str, *, went_away: bool = False, timed_out: bool = False
    ) -> NoReturn:
        """Log why the channel ends, close it, raise :class:`PeerError`.
        Misbehaviour is a warning; a peer that went away is only info."""
        if went_away:
            log.info("peer_closed", peer=self.peer, reason=reason)
        else:
            log.warning("peer_refused", peer=self.peer, reason=reason)
        await self.aclose()
        raise PeerError(self.peer, reason, went_away=went_away, timed_out=timed_out)

    async def say_bye(self, reason: str, *, within: float = 1.0) -> None:
        """Best effort: tell the peer why we hang up, then close."""
        if not self._closed and self.session.state is not State.CLOSED:
            with trio.move_on_after(within):
                try:
                    data = self.session.send(Bye(reason))
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        await self.aclose()

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
