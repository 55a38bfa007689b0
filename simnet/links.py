"""Emulated links: per-host uplink and downlink bandwidth, per-link latency,
fair sharing between concurrent transfers, drops and partitions, all in
trio time (under ``MockClock`` they cost no wall time).

A :class:`Fabric` knows every host's :class:`HostLink`.  What one end of an
emulated connection sends while its earlier bytes are still in flight
joins them: one transfer per direction at a time, from the sender's
uplink to the receiver's downlink.  Concurrent transfers share both ends:
a transfer's rate is ``min(up_src / transfers leaving src, down_dst /
transfers entering dst)``, recomputed whenever a transfer starts or ends
at either end, so the slower end bounds it.  Its bytes arrive one link
latency after its last byte left.

Like a socket, ``send_all`` returns once what is left to send fits in a
send buffer (:data:`SEND_BUFFER`): a small message costs its sender no
wait at all.  Completion is event based and lazy: a transfer alone on
both its links ends when its receiver wakes for its bytes (nobody else's
rate depends on it), and only transfers that share a link get a timer
(one task for the whole fabric) so the others speed up on time.  No loop
runs per byte or per chunk, and most messages cost one wake-up, the
receiver's (97% of a 300-peer swarm's transfers never share a link).

What it leaves out: TCP slow start and window limits (a transfer runs at
its fair share from its first byte), queueing delay, packet loss other
than a whole connection dropping, and the bandwidth acknowledgements use.
It counts the TCP/IP and Ethernet headers of every segment
(:func:`wire_bytes`), as a shaped link does.
"""

from __future__ import annotations

import collections
import errno
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Final

import trio
import trio.lowlevel

from gossipfl.transport.memory import MemoryWire

IDEAL: Final = math.inf
# Bytes a ``send_all`` may leave in flight when it returns, as a socket's
# send buffer does; a larger write waits until the rest fits.
SEND_BUFFER: Final = 64 * 1024
# What TCP/IP over Ethernet adds to each segment: a link's rate counts
# these bytes too.  Without them simnet ran every large transfer 3-5% faster
# than a tbf-shaped link of the same rate (bench/calibration.py).
SEGMENT_PAYLOAD: Final = 1448  # payload bytes in a full-size segment (MTU 1500)
SEGMENT_HEADERS: Final = 66  # Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12


def wire_bytes(payload: int) -> int:
    """Bytes a link carries for ``payload`` bytes sent in one write."""
    return payload + SEGMENT_HEADERS * math.ceil(payload / SEGMENT_PAYLOAD)


# Rounding room when a waiter wakes at a projected time.
_SLACK: Final = 1e-9


@dataclass(frozen=True)
class HostLink:
    """One host's access link: ``uplink`` and ``downlink`` in bytes/s, and
    one-way latency to the core of the network (a link's latency is the
    sum of both ends')."""

    uplink: float = IDEAL
    downlink: float = IDEAL
    latency_s: float = 0.0
    # Bytes an idle uplink passes at once, as a token-bucket shaper does
    # (tc's tbf, many ISPs' shapers); the bucket refills at the uplink rate.
    # 0: a plain link, every byte at the rate.
    burst_bytes: float = 0.0

    def __post_init__(self) -> None:
        if not (self.uplink > 0 and self.downlink > 0 and self.latency_s >= 0):
            raise ValueError(f"need positive bandwidths and latency >= 0, got {self}")
        if self.burst_bytes < 0:
            raise ValueError(f"burst_bytes must be >= 0, got {self}")


@dataclass(eq=False)
class _Transfer:
    """Bytes in flight from one stream end to its peer: all that end sent
    since its link direction was last idle, delivered together at the end."""

    sender: EmulatedStream
    receiver: EmulatedStream
    remaining: float  # bytes
    payloads: list[bytes] = field(default_factory=list)
    rate: float = 0.0  # bytes/s
    since: float = 0.0  # when ``remaining`` was last brought up to date
    end: float = math.inf  # projected, at the current rate
    done: bool = False  # delivered, or dropped

    @property
    def src(self) -> str:
        return self.sender.host

    @property
    def dst(self) -> str:
        return self.receiver.host

    def settle(self, now: float) -> None:
        if self.rate > 0:
            self.remaining = max(self.remaining - self.rate * (now - self.since), 0.0)
        self.since = now

    def project(self, now: float) -> None:
        self.end = now + self.remaining / self.rate if self.rate > 0 else math.inf

    def unsent_by(self, now: float) -> float:
        """Bytes still to leave at ``now``, at the current rate."""
        return max(self.remaining - self.rate * (now - self.since), 0.0)


class Fabric:
    """Every host's link, the transfers in flight, and which host pairs
    can reach each other.  Hosts it has no link for are ideal."""

    def __init__(self, hosts: dict[str, HostLink] | None = None) -> None:
        self.hosts: dict[str, HostLink] = dict(hosts or {})
        self._leaving: dict[str, set[_Transfer]] = collections.defaultdict(set)
        self._entering: dict[str, set[_Transfer]] = collections.defaultdict(set)
        self._streams: dict[frozenset[str], set[EmulatedStream]] = collections.defaultdict(set)
        self._group: dict[str, int] = {}  # host -> partition group; absent: group 0
        self._down: set[str] = set()  # hosts whose link is cut
        self._idle_since: dict[str, float] = {}  # host -> when its uplink went idle
        # Projected ends of transfers that share a link with another: the
        # others' rates change when one ends, so these end on time.
        self._due: list[tuple[float, int, _Transfer]] = []
        self._order = itertools.count()
        self._timer: trio.CancelScope | None = None
        self._timer_run: object = None  # the trio run whose task keeps time

    # -- the model ------------------------------------------------------------------------

    def link(self, host: str) -> HostLink:
        return self.hosts.get(host) or HostLink()

    def latency(self, a: str, b: str) -> float:
        return self.link(a).latency_s + self.link(b).latency_s

    def bottleneck(self, src: str, dst: str) -> float:
        """The rate one transfer alone gets from ``src`` to ``dst``."""
        return min(self.link(src).uplink, self.link(dst).downlink)

    def reachable(self, a: str, b: str) -> bool:
        if a in self._down or b in self._down:
            return a == b
        return self._group.get(a, 0) == self._group.get(b, 0)

    # -- events ---------------------------------------------------------------------------

    def set_link(self, host: str, link: HostLink) -> None:
        """Change a host's link now (a link degrading or recovering):
        transfers in flight at that host go on at their new share."""
        now = trio.current_time()
        self._catch_up(now, host, host)
        self.hosts[host] = link
        self._reshare(host, host, now)

    def partition(self, groups: list[list[str]]) -> None:
        """Split the network: hosts in different groups cannot reach each
        other (hosts not named form one more group).  Connections across
        groups drop; new ones time out."""
        self._group = {host: i + 1 for i, group in enumerate(groups) for host in group}
        self._drop_unreachable()

    def heal(self) -> None:
        self._group = {}

    def cut(self, host: str) -> None:
        """Take ``host``'s link down: all its connections drop, and nothing
        reaches it until :meth:`restore`."""
        self._down.add(host)
        self._drop_unreachable()

    def cut_all(self) -> None:
        """Every host goes down at once (the end of a run): all connections
        drop, and nothing more travels."""
        self._down.update(self.hosts)
        for streams in list(self._streams.values()):
            for stream in list(streams):
                stream.break_both()

    def restore(self, host: str) -> None:
        self._down.discard(host)

    def drop(self, a: str, b: str) -> None:
        """Every connection between ``a`` and ``b`` breaks now, mid-transfer."""
        for stream in list(self._streams.get(frozenset((a, b)), ())):
            stream.break_both()

    def _drop_unreachable(self) -> None:
        for streams in list(self._streams.values()):
            for stream in list(streams):
                if not self.reachable(stream.host, stream.peer_host):
                    stream.break_both()

    # -- transfers ------------------------------------------------------------------------

    def send(self, sender: EmulatedStream, receiver: EmulatedStream, payload: bytes) -> None:
        """``sender`` puts ``payload`` on the wire to ``receiver``: it joins
        the bytes still in flight that way, or starts a transfer."""
        now = trio.current_time()
        self._catch_up(now, sender.host, receiver.host)
        transfer = sender.sending
        if transfer is not None:  # the same rate, more bytes
            transfer.settle(now)
            transfer.remaining += wire_bytes(len(payload))
            transfer.payloads.append(payload)
            self._projected(transfer, now)
            return
        src, dst = sender.host, receiver.host
        if self.link(src).uplink == IDEAL and self.link(dst).downlink == IDEAL:
            receiver.deliver([payload], now + self.latency(src, dst))
            return
        transfer = _Transfer(
            sender, receiver, float(wire_bytes(len(payload))), [payload], since=now
        )
        transfer.remaining -= min(transfer.remaining, self._burst(src, now))
        sender.sending = transfer
        self._leaving[src].add(transfer)
        self._entering[dst].add(transfer)
        self._reshare(src, dst, now)

    def abort(self, transfer: _Transfer) -> None:
        """The connection dropped: ``transfer``'s bytes never arrive."""
        if not transfer.done:
            now = trio.current_time()
            self._catch_up(now, transfer.src, transfer.dst)
            if not transfer.done:
                self._end(transfer, now)
                self._reshare(transfer.src, transfer.dst, now)

    def catch_up(self, transfer: _Transfer) -> None:
        """Bring ``transfer`` up to now: delivered if its last byte left."""
        if not transfer.done:
            self._catch_up(trio.current_time(), transfer.src, transfer.dst)

    def _catch_up(self, now: float, src: str, dst: str) -> None:
        """Every transfer that ended by ``now`` on a shared link, then those
        alone at ``src``'s uplink or ``dst``'s downlink (nobody's rate
        depended on them, so they may end late)."""
        if self._due and self._due[0][0] <= now:
            self._advance(now)
        for transfers in (self._leaving[src], self._entering[dst]):
            ended = [t for t in transfers if t.end <= now]
            for transfer in ended:
                if not transfer.done:
                    self._complete(transfer)

    def _advance(self, now: float) -> None:
        """End the transfers on shared links due by ``now``, in order: each
        end speeds up the rest."""
        due = self._due
        while due and due[0][0] <= now:
            end, _, transfer = heapq.heappop(due)
            if transfer.end == end and not transfer.done:
                self._complete(transfer)

    def _complete(self, transfer: _Transfer) -> None:
        at = transfer.end
        self._end(transfer, at)
        transfer.receiver.deliver(transfer.payloads, at + self.latency(transfer.src, transfer.dst))
        self._reshare(transfer.src, transfer.dst, at)

    def _burst(self, host: str, now: float) -> float:
        """Bytes ``host``'s uplink passes at once now: its token bucket,
        refilled at the link's rate since the link went idle (none while
        another transfer leaves it)."""
        link = self.link(host)
        if not link.burst_bytes or self._leaving[host]:
            return 0.0
        idle = now - self._idle_since.get(host, -math.inf)
        return min(link.burst_bytes, idle * link.uplink)

    def _end(self, transfer: _Transfer, at: float) -> None:
        transfer.done = True
        self._leaving[transfer.src].discard(transfer)
        if self.link(transfer.src).burst_bytes and not self._leaving[transfer.src]:
            self._idle_since[transfer.src] = at
        self._entering[transfer.dst].discard(transfer)
        transfer.sender.sent(transfer)

    def _reshare(self, src: str, dst: str, now: float) -> None:
        """New rates for every transfer at ``src``'s uplink or ``dst``'s
        downlink (their counts changed), and new projected ends."""
        leaving, entering = self._leaving, self._entering
        for transfer in leaving[src] | entering[dst]:
            transfer.settle(now)
            up, down = leaving[transfer.src], entering[transfer.dst]
            transfer.rate = min(
                self.link(transfer.src).uplink / len(up),
                self.link(transfer.dst).downlink / len(down),
            )
            self._projected(transfer, now)

    def _projected(self, transfer: _Transfer, now: float) -> None:
        """A new projected end for ``transfer``: its waiters move, and its
        end gets a timer if another transfer shares a link with it."""
        transfer.project(now)
        if len(self._leaving[transfer.src]) > 1 or len(self._entering[transfer.dst]) > 1:
            heapq.heappush(self._due, (transfer.end, next(self._order), transfer))
            self._wind_timer()
        transfer.receiver.rewake()
        transfer.sender.rewake()

    def _wind_timer(self) -> None:
        """The timer task wakes at the next shared end (started on first
        need, once per trio run: a fabric may outlive one)."""
        run = trio.lowlevel.current_root_task()
        if self._timer_run is not run:
            self._timer_run = run
            self._timer = None
            trio.lowlevel.spawn_system_task(self._keep_time, name="simnet.links.timer")
        if self._timer is not None:
            self._timer.deadline = self._due[0][0]

    async def _keep_time(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._due[0][0] if self._due else math.inf) as timer:
                self._timer = timer
                await trio.sleep_forever()
            self._timer = None
            self._advance(trio.current_time())

    def _register(self, stream: EmulatedStream) -> None:
        self._streams[frozenset((stream.host, stream.peer_host))].add(stream)

    def _unregister(self, stream: EmulatedStream) -> None:
        pair = frozenset((stream.host, stream.peer_host))
        streams = self._streams.get(pair)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[pair]


_EOF: Final = b""


class EmulatedStream(trio.abc.Stream):
    """One end of an emulated connection from ``host`` to ``peer_host``."""

    def __init__(self, fabric: Fabric, host: str, peer_host: str) -> None:
        self.fabric = fabric
        self.host = host
        self.peer_host = peer_host
        self.peer: EmulatedStream | None = None
        self.sending: _Transfer | None = None  # our bytes in flight
        self._inbox: collections.deque[tuple[float, bytes]] = collections.deque()
        self._waiting = trio.lowlevel.ParkingLot()
        self._wait: trio.CancelScope | None = None  # the receiver's, while it waits
        self._send_wait: trio.CancelScope | None = None  # the sender's, while it waits
        self._last_arrival = 0.0
        self._closed = False
        self._broken = False
        self._receiving = False
        fabric._register(self)

    # -- called by the fabric -------------------------------------------------------------

    def deliver(self, payloads: list[bytes], arrival: float) -> None:
        # Arrivals keep their order even if the latency changes meanwhile.
        self._last_arrival = max(arrival, self._last_arrival)
        self._inbox.extend((self._last_arrival, data) for data in payloads)
        self.rewake()

    def sent(self, transfer: _Transfer) -> None:
        if self.sending is transfer:
            self.sending = None
            if self._closed:
                self.fabric._unregister(self)

    def rewake(self) -> None:
        """A waiting receiver wakes when its next bytes arrive, a waiting
        sender when the rest of its bytes fit the send buffer (both move
        with every rate change)."""
        # Setting a deadline costs more than comparing: most do not move.
        if self._wait is not None and self._wait.deadline != (arrival := self._arrival()):
            self._wait.deadline = arrival
        if self._send_wait is not None:
            self._send_wait.deadline = self._buffered_at()

    def _arrival(self) -> float:
        if self._inbox:
            return self._inbox[0][0]
        incoming = self.peer.sending if self.peer is not None else None
        if incoming is None:
            return math.inf
        return incoming.end + self.fabric.latency(incoming.src, incoming.dst)

    def _buffered_at(self) -> float:
        transfer = self.sending
        if transfer is None or transfer.remaining <= SEND_BUFFER:
            return -math.inf
        if transfer.rate <= 0:
            return math.inf
        return transfer.since + (transfer.remaining - SEND_BUFFER) / transfer.rate

    # -- the stream -----------------------------------------------------------------------

    def break_both(self) -> None:
        for end in (self, self.peer):
            if end is not None:
                end._break()

    def _break(self) -> None:
        self._broken = True
        self._waiting.unpark_all()
        self.fabric._unregister(self)
        if self.sending is not None:
            self.fabric.abort(self.sending)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        peer = self.peer
        if self._broken or peer is None or peer._closed:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("connection reset by peer")
        self.fabric.send(self, peer, bytes(data))
        if self._buffered_at() == -math.inf:
            await trio.lowlevel.checkpoint()
        else:
            await self._wait_until_buffered()
        if self._broken:
            raise trio.BrokenResourceError("connection dropped")

    async def _wait_until_buffered(self) -> None:
        while not self._broken and self.sending is not None:
            transfer = self.sending
            self.fabric.catch_up(transfer)
            if transfer.done or transfer.unsent_by(trio.current_time()) <= SEND_BUFFER + _SLACK:
                return
            with trio.CancelScope(deadline=self._buffered_at()) as self._send_wait:
                await self._waiting.park()
            self._send_wait = None

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving")
        self._receiving = True
        waited = False
        try:
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream closed")
                if self._broken:
                    raise trio.BrokenResourceError("connection dropped")
                now = trio.current_time()
                incoming = self.peer.sending if self.peer is not None else None
                if not self._inbox and incoming is not None and incoming.end <= now:
                    self.fabric.catch_up(incoming)
                if self._inbox and self._inbox[0][0] <= now:
                    if not waited:  # waiting was our checkpoint; else take one
                        await trio.lowlevel.checkpoint()
                    return self._take(max_bytes)
                waited = True
                # Woken by the deadline when bytes arrive (rates and deliveries
                # move it), or by an unpark when the stream breaks or closes.
                with trio.CancelScope(deadline=self._arrival()) as self._wait:
                    await self._waiting.park()
                self._wait = None
        finally:
            self._wait = None
            self._receiving = False

    def _take(self, max_bytes: int | None) -> bytes:
        arrival, data = self._inbox[0]
        if data is _EOF:
            return b""  # leave the marker: every later read sees end of stream too
        if max_bytes is None or len(data) <= max_bytes:
            self._inbox.popleft()
            return data
        self._inbox[0] = (arrival, data[max_bytes:])
        return data[:max_bytes]

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._waiting.unpark_all()
            peer = self.peer
            if self.sending is not None:
                # End of stream after the bytes in flight, as TCP's FIN.
                self.sending.payloads.append(_EOF)
            else:
                self.fabric._unregister(self)
                if peer is not None and not peer._closed:
                    peer.deliver(
                        [_EOF], trio.current_time() + self.fabric.latency(self.host, self.peer_host)
                    )
        await trio.lowlevel.checkpoint()


class EmulatedWire(MemoryWire):
    """A :class:`MemoryWire` whose connections run over a :class:`Fabric`:
    a connect takes one round trip, and times out (``ETIMEDOUT``) where
    the fabric cannot reach the host."""

    def __init__(self, fabric: Fabric) -> None:
        super().__init__()
        self.fabric = fabric

    def stream_pair(self, dialer: str, listener: str) -> tuple[trio.abc.Stream, trio.abc.Stream]:
        ours = EmulatedStream(self.fabric, dialer, listener)
        theirs = EmulatedStream(self.fabric, listener, dialer)
        ours.peer, theirs.peer = theirs, ours
        return ours, theirs

    async def reach(self, dialer: str, listener: str, deadline: float) -> None:
        if not self.fabric.reachable(dialer, listener):
            await trio.sleep_until(deadline)
            raise TimeoutError(errno.ETIMEDOUT, f"{listener}: connection timed out")
        await trio.sleep(2 * self.fabric.latency(dialer, listener))
