"""Emulated links: per-host uplink and downlink bandwidth, per-link latency,
fair sharing between concurrent transfers, drops and partitions, all in
trio time (under ``MockClock`` they cost no wall time).

A :class:`Fabric` knows every host's :class:`HostLink`.  Each ``send_all``
on an emulated stream is one transfer from the sender's uplink to the
receiver's downlink.  Concurrent transfers share both ends: a transfer's
rate is ``min(up_src / transfers leaving src, down_dst / transfers
entering dst)``, recomputed whenever a transfer starts or ends at either
end, so the slower end bounds it.  The sender is busy for the bytes /
rate it gets; the bytes arrive one link latency later.  Completion is
event based: a transfer's task sleeps until its projected end, and a rate
change moves that deadline; no loop runs per byte or per chunk.  A waiting
receiver sleeps until its bytes arrive (the delivery moves its deadline)
rather than being woken when they are sent and again when they arrive:
one wake-up per message (4% of a 1000-peer run's wall time).

What it leaves out: TCP slow start and window limits (a transfer runs at
its fair share from its first byte), queueing delay, packet loss other
than a whole connection dropping, and the bandwidth acknowledgements use.
"""

from __future__ import annotations

import collections
import errno
import math
from dataclasses import dataclass, field
from typing import Final

import trio
import trio.lowlevel

from gossipfl.transport.memory import MemoryWire

IDEAL: Final = math.inf


@dataclass(frozen=True)
class HostLink:
    """One host's access link: ``uplink`` and ``downlink`` in bytes/s, and
    one-way latency to the core of the network (a link's latency is the
    sum of both ends')."""

    uplink: float = IDEAL
    downlink: float = IDEAL
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.uplink > 0 and self.downlink > 0 and self.latency_s >= 0):
            raise ValueError(f"need positive bandwidths and latency >= 0, got {self}")


@dataclass(eq=False)
class _Transfer:
    src: str
    dst: str
    remaining: float  # bytes
    rate: float = 0.0  # bytes/s
    since: float = 0.0  # when ``remaining`` was last brought up to date
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    broken: bool = False

    def settle(self, now: float) -> None:
        if self.rate > 0:
            self.remaining = max(self.remaining - self.rate * (now - self.since), 0.0)
        self.since = now


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
        self.hosts[host] = link
        self._reshare(host, host)

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

    async def transmit(self, transfer: _Transfer) -> None:
        """Occupy both ends' links until ``transfer`` has moved all its
        bytes (at once on ideal links); a drop ends it early with
        ``transfer.broken`` set."""
        src, dst = transfer.src, transfer.dst
        if self.link(src).uplink == IDEAL and self.link(dst).downlink == IDEAL:
            await trio.lowlevel.checkpoint()
            return
        transfer.since = trio.current_time()
        self._leaving[src].add(transfer)
        self._entering[dst].add(transfer)
        try:
            self._reshare(src, dst)
            with transfer.scope:
                await trio.sleep_forever()
        finally:
            self._leaving[src].discard(transfer)
            self._entering[dst].discard(transfer)
            self._reshare(src, dst)

    def _reshare(self, src: str, dst: str) -> None:
        """New rates for every transfer at ``src``'s uplink or ``dst``'s
        downlink (their counts changed), and new projected ends."""
        now = trio.current_time()
        for transfer in self._leaving[src] | self._entering[dst]:
            transfer.settle(now)
            transfer.rate = min(
                self.link(transfer.src).uplink / len(self._leaving[transfer.src]),
                self.link(transfer.dst).downlink / len(self._entering[transfer.dst]),
            )
            transfer.scope.deadline = now + transfer.remaining / transfer.rate

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
        self._inbox: collections.deque[tuple[float, bytes]] = collections.deque()
        self._waiting = trio.lowlevel.ParkingLot()
        self._wait: trio.CancelScope | None = None  # the receiver's, while it waits
        self._last_arrival = 0.0
        self._sending: _Transfer | None = None
        self._closed = False
        self._broken = False
        self._receiving = False
        fabric._register(self)

    def _deliver(self, data: bytes, arrival: float) -> None:
        # Arrivals keep their order even if the latency changes meanwhile.
        self._last_arrival = max(arrival, self._last_arrival)
        self._inbox.append((self._last_arrival, data))
        if self._wait is not None:
            # Wake the receiver when the bytes arrive, not now: one wake-up
            # per message instead of three.
            self._wait.deadline = min(self._wait.deadline, self._inbox[0][0])

    def break_both(self) -> None:
        for end in (self, self.peer):
            if end is not None:
                end._break()

    def _break(self) -> None:
        self._broken = True
        self._waiting.unpark_all()
        self.fabric._unregister(self)
        if self._sending is not None:
            self._sending.broken = True
            self._sending.scope.cancel()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._broken or self.peer is None or self.peer._closed:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("connection reset by peer")
        payload = bytes(data)
        transfer = _Transfer(self.host, self.peer_host, float(len(payload)))
        self._sending = transfer
        try:
            await self.fabric.transmit(transfer)
        finally:
            self._sending = None
        if transfer.broken or self._broken:
            raise trio.BrokenResourceError("connection dropped")
        if self.peer is not None:
            latency = self.fabric.latency(self.host, self.peer_host)
            self.peer._deliver(payload, trio.current_time() + latency)

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
                if self._inbox and self._inbox[0][0] <= trio.current_time():
                    if not waited:  # waiting was our checkpoint; else take one
                        await trio.lowlevel.checkpoint()
                    return self._take(max_bytes)
                waited = True
                arrival = self._inbox[0][0] if self._inbox else math.inf
                # Woken by the deadline when bytes arrive (_deliver moves it),
                # or by an unpark when the stream breaks or closes.
                with trio.CancelScope(deadline=arrival) as self._wait:
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
            self.fabric._unregister(self)
            peer = self.peer
            if peer is not None and not peer._closed:
                peer._deliver(
                    _EOF, trio.current_time() + self.fabric.latency(self.host, self.peer_host)
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
