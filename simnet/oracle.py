"""GossipFL's centralized matching as a selector the simulated nodes obey.

Only a simulator knows every link, so only it can run the reference: a
:class:`MatchingOracle` computes one bottleneck matching per gossip round
(:class:`gossipfl.topology.oracle.OracleMatching`, with its connectivity
guard) from the true bandwidth of every pair, and each node's
:class:`OracleSelector` ranks its partner of the node's current round
first.  Nodes run rounds at their own pace, so two partners may be in
different rounds; the matching of a round is computed once, the first
time any node asks for it, and rounds are matched in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from gossipfl.topology.oracle import OracleMatching
from gossipfl.topology.peers import Peer


class MatchingOracle:
    """One matching per round over ``bandwidth`` (n x n, bytes/s) between
    the nodes ``node_ids`` (index order)."""

    def __init__(self, bandwidth: np.ndarray, node_ids: Sequence[str]) -> None:
        self.bandwidth = bandwidth
        self.node_ids = list(node_ids)
        self._matching = OracleMatching()
        self._partners: list[dict[int, int]] = []  # per round: index -> index

    def partner(self, index: int, round_: int) -> str | None:
        while len(self._partners) <= round_:
            pairs = self._matching.match(self.bandwidth)
            partners = {i: j for i, j in pairs} | {j: i for i, j in pairs}
            self._partners.append(partners)
        j = self._partners[round_].get(index)
        return None if j is None else self.node_ids[j]


class OracleSelector:
    """Node ``index``'s view of the oracle: its matched partner, if live."""

    name: ClassVar[str] = "oracle-matching"

    def __init__(self, oracle: MatchingOracle, index: int) -> None:
        self.oracle = oracle
        self.index = index

    def rank(self, peers: Sequence[Peer], round_: int, rng: np.random.Generator) -> list[Peer]:
        partner = self.oracle.partner(self.index, round_)
        return [p for p in peers if p.node_id == partner]
