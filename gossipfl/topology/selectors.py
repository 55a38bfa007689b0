"""Partner selectors: whom to gossip with next, decided by each node alone.

A selector ranks the live peers; the node tries them in that order (a busy
partner answers ``busy`` and the next one is tried).  Selectors are pure
functions of the peers, the node's round counter and an injected rng.
Registered in the entry point group ``gossipfl.selectors``; the entry point
is a class whose constructor takes keyword options only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from gossipfl.topology.peers import Peer


@runtime_checkable
class Selector(Protocol):
    name: ClassVar[str]

    def rank(self, peers: Sequence[Peer], round_: int, rng: np.random.Generator) -> list[Peer]:
        """``peers`` (the live ones) in the order to try them.  May leave
        peers out; never adds any.  Must not block."""
        ...


class Uniform:
    """A uniformly random order: plain gossip."""

    name: ClassVar[str] = "uniform"

    def rank(self, peers: Sequence[Peer], round_: int, rng: np.random.Generator) -> list[Peer]:
        return [peers[i] for i in rng.permutation(len(peers))]


# A node reaches each of n peers within max(max_staleness, this x n) rounds:
# forced contacts then take at most 1/this of its rounds.
STALENESS_PER_PEER = 4
# Round trips a new connection costs before its first exchange: the connect
# and the hello (a TLS handshake adds about one more, not counted).
SETUP_ROUND_TRIPS = 2


class BandwidthAware:
    """GossipFL-style and decentralized: prefer fast links, starve none.

    1. Peers about to go ``max_staleness`` rounds without contact (either
       way) come first, earliest deadline first (ties in random order, so
       nodes that started together do not all call on the same peer): every
       peer is reached at least once every ``max_staleness`` rounds, or
       every ``STALENESS_PER_PEER`` x peers rounds in a swarm too large for
       that, so that forced contacts never take over the choice.
    2. Then the rest, sampled without replacement with weight
       ``rate ** power``, where ``rate`` is the link's effective rate for
       an exchange of ``exchange_bytes``: bytes over the expected time,
       which is the round trip plus, where no channel to the peer is open,
       the connect and the hello (so latency counts as much as bandwidth:
       small exchanges are decided by RTT, large ones by bandwidth).  A
       link never measured weighs as much as the slowest known one.
    3. Peers exchanged with in the last ``exclude_recent`` rounds come last,
       so a node does not keep averaging with the same partner.
    4. A peer no handshake has proved (only an announcement vouches for
       it) never weighs more than the lightest proven one, and only proven
       peers are forced by 1.: discovery is a hint (docs/security.md).

    Weights also use each peer's advertised capacity (its own best rate),
    see :meth:`weights`: with ``fit = 0`` they depend on our link only.
    """

    name: ClassVar[str] = "bandwidth"

    def __init__(
        self,
        max_staleness: int = 200,
        exclude_recent: int = 1,
        power: float = 2.0,
        fit: float = 1.0,
        exchange_bytes: int = 100_000,
    ) -> None:
        if max_staleness < 1 or exclude_recent < 0 or power < 0 or fit < 0 or exchange_bytes < 1:
            raise ValueError(
                "need max_staleness >= 1, exclude_recent >= 0, power >= 0, fit >= 0, "
                "exchange_bytes >= 1"
            )
        self.max_staleness = max_staleness
        self.exclude_recent = exclude_recent
        self.power = power
        self.fit = fit
        self.exchange_bytes = exchange_bytes

    def weights(self, peers: Sequence[Peer], verified: Sequence[bool] | None = None) -> np.ndarray:
        """``(rate / fastest) ** power * (link / capacity) ** fit``
        (``verified``: each peer's :attr:`Peer.verified`, if known).

        ``rate`` counts the connect and hello where no channel is open;
        ``link`` is the same rate over an open channel, comparable with the
        capacity the peer advertises.  The second factor is what makes
        pairs match like the oracle's: a peer that advertises a capacity
        far above our link to it would be tied up on a slow link, so it
        weighs less (a slow node prefers slow partners; fast nodes find
        each other).  Unknown capacity: 1.
        """
        size = self.exchange_bytes
        # An unknown link is taken to be as slow as the slowest known one:
        # a node knows few of its links, and exploring each unknown one as a
        # fast one spends most rounds on slow partners.  Peers that contact
        # us are measured anyway, and the staleness bound reaches the rest.
        link, rate = np.ones(len(peers)), np.ones(len(peers))
        known = [i for i, p in enumerate(peers) if p.link.measured]
        if known:
            known_link = np.array([size / peers[i].link.round_trip(size) for i in known])
            known_rate = np.array([size / _exchange_time(peers[i], size) for i in known])
            link.fill(known_link.min())
            rate.fill(known_rate.min())
            link[known], rate[known] = known_link, known_rate
        capacity = np.array([p.capacity or 0.0 for p in peers])
        usage = np.where(capacity > 0, np.minimum(link / np.maximum(capacity, 1e-9), 1.0), 1.0)
        weights: np.ndarray = np.power(rate / rate.max(), self.power) * np.power(usage, self.fit)
        # A peer only an announcement vouches for (mDNS is unauthenticated)
        # never weighs more than the lightest peer a handshake proved.
        proven = np.array([p.verified for p in peers] if verified is None else verified)
        if proven.any() and not proven.all():
            weights = np.where(proven, weights, np.minimum(weights, weights[proven].min()))
        return weights

    def rank(self, peers: Sequence[Peer], round_: int, rng: np.random.Generator) -> list[Peer]:
        if not peers:
            return []
        verified = {p.node_id for p in peers if p.verified}
        forced = self._forced(peers, verified, round_, rng)
        taken = {p.node_id for p in forced}
        recent = [
            p
            for p in peers
            if p.node_id not in taken
            and p.last_contact_round is not None
            and round_ - p.last_contact_round < self.exclude_recent
        ]
        taken |= {p.node_id for p in recent}
        rest = [p for p in peers if p.node_id not in taken]
        weights = self.weights(rest, [p.node_id in verified for p in rest]) if rest else None
        return forced + _weighted_order(rest, weights, rng) + recent

    def _forced(
        self, peers: Sequence[Peer], verified: set[str], round_: int, rng: np.random.Generator
    ) -> list[Peer]:
        """Peers that must be contacted now for every deadline to hold.

        A peer's deadline is its last contact + the staleness bound.
        Serving one peer per round in deadline order, the i-th must be
        reached within i rounds; as soon as that is tight for some peer,
        every peer up to it is forced, earliest deadline first.
        """
        # Only proven peers are forced: a flood of fake announcements must
        # not take the rounds (unproven ones are reached through the weights).
        peers = [p for p in peers if p.node_id in verified] or peers
        bound = max(self.max_staleness, STALENESS_PER_PEER * len(peers))
        since = [p.rounds_since_contact(round_) for p in peers]
        if bound - max(since) - (len(peers) - 1) > 1:
            return []  # even the stalest peer, served last, would be in time
        shuffled = rng.permutation(len(peers))
        order = sorted(shuffled, key=lambda i: -since[i])  # stable: random among equals
        tight = [rank for rank, i in enumerate(order) if bound - since[i] - rank <= 1]
        return [peers[i] for i in order[: tight[-1] + 1]] if tight else []


def _exchange_time(peer: Peer, size: int) -> float:
    """Expected seconds for an exchange of ``size`` bytes with ``peer``: the
    round trip, plus the connect and the hello (about two more) unless a
    channel to it is open."""
    setup = 0.0 if peer.connected else SETUP_ROUND_TRIPS * peer.link.rtt
    return setup + peer.link.round_trip(size)


def _weighted_order(
    peers: Sequence[Peer], weights: np.ndarray | None, rng: np.random.Generator
) -> list[Peer]:
    """Sampling without replacement proportional to ``weights``
    (Efraimidis–Spirakis: sort by u ** (1 / w))."""
    if not peers or weights is None:
        return []
    keys = np.log(rng.random(len(peers))) / np.maximum(weights, 1e-12)
    return [peers[i] for i in np.argsort(-keys, kind="stable")]
