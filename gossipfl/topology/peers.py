"""The peer table: every peer this node knows of, and what it knows about
each.  Pure data: every method takes ``now`` (seconds, any clock) and the
node's gossip ``round`` where they matter; nothing reads a clock.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gossipfl.topology.links import LinkEstimate
from gossipfl.topology.peer_sample import SAMPLE_SIZE, SharedPeer

UNKNOWN_LINK = LinkEstimate()
# A peer no handshake ever proved is forgotten after this many failed
# contacts in a row (it comes back if it is announced again).
FORGET_UNPROVEN_AFTER = 3
# At most this many peers no handshake has proved: a flood of announcements
# costs a bounded table.  Room is made by forgetting withdrawn or failing
# ones, or one unheard of for a minute; else a new announcement waits.
MAX_UNPROVEN = 1024
UNPROVEN_STALE_S = 60.0
# At most this many peers in all (``[discovery] max_peers``).  When full, a
# new peer takes the place of one that left, or failed, or was never
# proven; a table of live proven peers takes no more.
MAX_PEERS = 4096


@dataclass(frozen=True)
class Backoff:
    """After ``n`` consecutive failures a peer is skipped for
    ``min(base * 2**(n-1), cap)`` seconds."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.base * 2.0 ** (failures - 1), self.cap)


class Withdrawal(enum.Enum):
    GONE = "gone"  # no longer live
    KEPT = "kept"  # another announcement went; the peer stays
    CHECK = "check"  # proven here: gone only if it no longer answers


class Peer(NamedTuple):
    """What we know of one peer; immutable (the table replaces it).  A
    named tuple, not a dataclass: a simulated swarm of a thousand holds a
    million of these and updates them on every exchange, and a tuple is
    built 4x and replaced 4x faster than a frozen dataclass (measured)."""

    node_id: str
    host: str
    port: int
    swarm_id: str
    protocol_version: int
    first_seen: float
    last_seen: float
    first_round: int = 0  # our round when we first heard of it
    present: bool = True  # announced and not withdrawn
    last_exchange: float | None = None
    last_contact_round: int | None = None  # our round of the last exchange either way
    exchanges: int = 0  # exchanges with it, either way
    failures: int = 0
    retry_at: float = 0.0
    link: LinkEstimate = UNKNOWN_LINK  # immutable: one shared default
    # The peer's own best measured link rate (bytes/s), as it advertises it;
    # lets a selector avoid tying up a fast peer on a slow link.
    capacity: float | None = None
    # We hold an open, greeted channel to it: an exchange skips the connect
    # and the hello (two round trips, more with TLS).
    connected: bool = False
    # Discovery is a hint, a TLS handshake is a fact (mDNS is unauthenticated:
    # anyone on the LAN can announce any node id at any address).  ``proven``
    # is the last address where a handshake proved this node id; a different
    # address announced since is only a ``candidate``, tried once the proven
    # one fails.
    proven: tuple[str, int] | None = None
    candidate: tuple[str, int] | None = None

    @property
    def verified(self) -> bool:
        """A handshake proved this node id at the address we would dial."""
        return self.proven == (self.host, self.port)

    def live(self, now: float) -> bool:
        """Present and not backing off after failures."""
        return self.present and now >= self.retry_at

    def rounds_since_contact(self, round_: int) -> int:
        since = self.first_round if self.last_contact_round is None else self.last_contact_round
        return round_ - since

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class PeerTable:
    """Known peers by node id.  Our own id is never added."""

    def __init__(
        self,
        own_id: str,
        backoff: Backoff | None = None,
        exchange_bytes: int = 100_000,
        max_unproven: int = MAX_UNPROVEN,
        max_peers: int = MAX_PEERS,
    ) -> None:
        self.own_id = own_id
        self.backoff = backoff or Backoff()
        self.max_unproven = min(max_unproven, max_peers)
        self.max_peers = max_peers
        # The size our capacity is quoted for: a typical exchange.
        self.exchange_bytes = exchange_bytes
        self._peers: dict[str, Peer] = {}
        # Node ids in a stable order (sorted: the same in every run), sorted
        # when next read: a swarm's start announces hundreds at once.
        self._order: list[str] = []
        self._order_sorted = True
        self._fastest: tuple[float, str] | None = None  # best measured link, and whose
        self._connected: set[str] = set()  # node ids we hold a channel to
        self._unproven: set[str] = set()  # node ids no handshake has proved

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._peers

    def get(self, node_id: str) -> Peer | None:
        return self._peers.get(node_id)

    def all(self) -> list[Peer]:
        return list(self._peers.values())

    def live(self, now: float) -> list[Peer]:
        """Peers that may be contacted now, in a stable order (by node id)."""
        peers = self._peers
        return [peer for node_id in self._ordered() if (peer := peers[node_id]).live(now)]

    def _ordered(self) -> list[str]:
        if not self._order_sorted:
            self._order.sort()
            self._order_sorted = True
        return self._order

    def sample(self, now: float, size: int, rng: np.random.Generator) -> list[Peer]:
        """The live peers when there are at most ``size`` of them, else
        about ``size`` live ones: those we hold a channel to, and the rest
        drawn at random (in table order).  Costs O(size), not O(table): a
        node of a large swarm ranks a fresh random sample each round
        instead of every peer it knows.  Connected peers are always in it:
        an exchange over an open channel is the cheapest there is, and
        would otherwise be seen only when chance draws it."""
        if len(self._order) <= size:
            return self.live(now)
        peers, order = self._peers, self._ordered()
        picks = np.sort(rng.choice(len(order), size=size, replace=False)).tolist()
        drawn = [peers[order[i]] for i in picks]
        connected = [peers[node_id] for node_id in sorted(self._connected)]
        chosen = {p.node_id for p in connected}
        extra = [p for p in drawn if p.node_id not in chosen][: max(size - len(connected), 0)]
        return [p for p in connected + extra if p.live(now)]

    def announced(
        self,
        node_id: str,
        host: str,
        port: int,
        swarm_id: str,
        protocol_version: int,
        now: float,
        round_: int = 0,
    ) -> Peer | None:
        """Discovery saw ``node_id`` at ``host:port``.  A changed address
        clears the failure backoff (it may be why contacts failed), except
        for a peer a handshake proved elsewhere: it keeps its address, and
        the announced one is only tried when that fails."""
        if node_id == self.own_id:
            return None
        old = self._peers.get(node_id)
        if old is None:
            if len(self._unproven) >= self.max_unproven and not self._make_room(now):
                return None  # a flood of announcements: those we know come first
            if len(self._peers) >= self.max_peers and not self._evict():
                return None  # full of live proven peers
            self._unproven.add(node_id)
            self._order.append(node_id)
            self._order_sorted = False
            peer = Peer(
                node_id, host, port, swarm_id, protocol_version, now, now, first_round=round_
            )
        elif old.proven is not None and (host, port) != old.proven:
            peer = old._replace(
                swarm_id=swarm_id,
                protocol_version=protocol_version,
                present=True,
                candidate=(host, port),
            )
        else:
            moved = (host, port) != (old.host, old.port)
            peer = old._replace(
                candidate=None,
                host=host,
                port=port,
                swarm_id=swarm_id,
                protocol_version=protocol_version,
                last_seen=now,
                present=True,
                failures=0 if moved else old.failures,
                retry_at=0.0 if moved else old.retry_at,
            )
        self._peers[node_id] = peer
        return peer

    def withdrawn(self, node_id: str, address: tuple[str, int] | None = None) -> Withdrawal:
        """Discovery says the peer left (the announcement of ``address``,
        if given, was withdrawn).  An unverified peer stays known but not
        live (``GONE``); the withdrawal of another address than the one we
        dial changes nothing (``KEPT``); a peer a handshake proved at that
        address stays until it is seen not to answer (``CHECK``: ask it,
        then :meth:`gone` if it does not)."""
        peer = self._peers.get(node_id)
        if peer is None:
            return Withdrawal.KEPT
        if peer.candidate is not None and address == peer.candidate:
            self._peers[node_id] = peer._replace(candidate=None)
            return Withdrawal.KEPT
        if address is not None and address != (peer.host, peer.port):
            return Withdrawal.KEPT
        if peer.verified:
            return Withdrawal.CHECK
        self.gone(node_id)
        return Withdrawal.GONE

    def gone(self, node_id: str) -> None:
        """The peer left: it stays known but not live until announced again."""
        peer = self._peers.get(node_id)
        if peer is not None:
            self._peers[node_id] = peer._replace(present=False)

    def succeeded(self, node_id: str, now: float, round_: int) -> None:
        """An exchange with the peer (either way) went through."""
        peer = self._peers.get(node_id)
        if peer is None:
            return
        self._peers[node_id] = peer._replace(
            last_seen=now,
            last_exchange=now,
            last_contact_round=round_,
            exchanges=peer.exchanges + 1,
            failures=0,
            retry_at=0.0,
        )

    def measured(self, node_id: str, nbytes: int, seconds: float) -> None:
        """A round trip with the peer moved ``nbytes`` (both ways) in
        ``seconds``: fold it into the link estimate."""
        peer = self._peers.get(node_id)
        if peer is None:
            return
        link = peer.link.observe(nbytes, seconds)
        self._peers[node_id] = peer._replace(link=link)
        rate = self._rate(link)
        if self._fastest is None or rate >= self._fastest[0]:
            self._fastest = (rate, node_id)
        elif self._fastest[1] == node_id:  # the fastest got slower: look again
            self._fastest = max(
                (self._rate(p.link), p.node_id) for p in self._peers.values() if p.link.measured
            )

    def _rate(self, link: LinkEstimate) -> float:
        """Bytes/s an exchange of our usual size gets over ``link``."""
        return self.exchange_bytes / link.round_trip(self.exchange_bytes)

    def failed(self, node_id: str, now: float, retry_cap: float | None = None) -> None:
        """Contact failed; back off exponentially before trying again (for
        at most ``retry_cap`` seconds, if given)."""
        peer = self._peers.get(node_id)
        if peer is None:
            return
        if peer.verified and peer.candidate is not None:
            # The proven address fails and another was announced: the peer
            # may have moved.  Try it now, once; the handshake decides.
            host, port = peer.candidate
            self._peers[node_id] = peer._replace(host=host, port=port, candidate=None)
            return
        if not peer.verified and peer.proven is not None:
            # An announced address that did not prove itself: back to the
            # one that did (an outsider's announcement cannot strand a peer).
            host, port = peer.proven
            peer = peer._replace(host=host, port=port)
        failures = peer.failures + 1
        if peer.proven is None and failures >= FORGET_UNPROVEN_AFTER:
            self._forget(node_id)  # an announcement nobody stands behind: a flood's fakes go
            return
        delay = self.backoff.delay(failures)
        if retry_cap is not None:
            delay = min(delay, retry_cap)
        self._peers[node_id] = peer._replace(failures=failures, retry_at=now + delay)

    def _forget(self, node_id: str) -> None:
        del self._peers[node_id]
        order = self._ordered()
        order.pop(bisect.bisect_left(order, node_id))
        self._connected.discard(node_id)
        self._unproven.discard(node_id)

    def _make_room(self, now: float) -> bool:
        """Forget the unproven peers that are withdrawn or failing, or else
        the one heard of least recently, if it is older than a minute;
        whether there is room for one more now."""
        peers = self._peers
        doomed = [n for n in self._unproven if not peers[n].present or peers[n].failures]
        if not doomed:
            stalest = min(self._unproven, key=lambda n: peers[n].last_seen)
            if now - peers[stalest].last_seen > UNPROVEN_STALE_S:
                doomed = [stalest]
        for node_id in doomed:
            self._forget(node_id)
        return len(self._unproven) < self.max_unproven

    def _evict(self) -> bool:
        """Forget one peer to make room for another: one that left, else one
        never proven (failing first, then the least recently heard of), else
        a proven one that is failing; whether one was forgotten."""
        peers = self._peers.values()
        for doomed in (
            [p for p in peers if not p.present],
            [p for p in peers if not p.verified],
            [p for p in peers if p.failures],
        ):
            if doomed:
                self._forget(min(doomed, key=_eviction_order).node_id)
                return True
        return False

    def shareable(self, rng: np.random.Generator, size: int = SAMPLE_SIZE) -> list[SharedPeer]:
        """A random sample of the live peers a handshake proved, for a
        partner's peer exchange (a hint to it, never a fact)."""
        order, peers = self._ordered(), self._peers
        if len(order) > 4 * size:  # a large table: look at a random few, not all
            order = [order[i] for i in sorted(set(rng.integers(0, len(order), 4 * size).tolist()))]
        proven = [p for n in order if (p := peers[n]).verified and p.present and not p.failures]
        if len(proven) > size:
            picks = rng.choice(len(proven), size=size, replace=False)
            proven = [proven[i] for i in sorted(picks.tolist())]
        return [SharedPeer(p.node_id, p.host, p.port) for p in proven]

    def learned(
        self, peers: list[SharedPeer], swarm_id: str, protocol_version: int, now: float, round_: int
    ) -> int:
        """A partner told us of ``peers``: those we did not know are added,
        unproven (one we know keeps what we know of it, address included);
        returns how many were new."""
        new = 0
        for shared in peers:
            if shared.node_id in self._peers or shared.node_id == self.own_id:
                continue
            added = self.announced(
                shared.node_id, shared.host, shared.port, swarm_id, protocol_version, now, round_
            )
            new += added is not None
        return new

    def connected(self, node_id: str, up: bool) -> None:
        """A channel we dialled to the peer opened (``up``) or closed."""
        peer = self._peers.get(node_id)
        if peer is None:
            return
        if up and not peer.verified:  # we dialled its address and the handshake proved it
            peer = self._peers[node_id] = peer._replace(proven=(peer.host, peer.port))
            self._unproven.discard(node_id)
        if peer.connected != up:
            self._peers[node_id] = peer._replace(connected=up)
            (self._connected.add if up else self._connected.discard)(node_id)

    def advertised(self, node_id: str, capacity: float) -> None:
        """The peer says its best link runs at ``capacity`` bytes/s."""
        peer = self._peers.get(node_id)
        if peer is not None and capacity > 0:
            self._peers[node_id] = peer._replace(capacity=capacity)

    def capacity(self) -> float | None:
        """Our own best measured rate (for an exchange of our usual size),
        to advertise to peers."""
        return None if self._fastest is None else self._fastest[0]

    def busy(self, node_id: str, now: float, retry_after: float) -> None:
        """The peer answered busy: not a failure, but skip it for a while."""
        peer = self._peers.get(node_id)
        if peer is not None:
            self._peers[node_id] = peer._replace(retry_at=now + retry_after, last_seen=now)


def _eviction_order(peer: Peer) -> tuple[int, float]:
    """Failing ones first, then the least recently heard of."""
    return (-peer.failures, peer.last_seen)
