"""GossipFL's centralized reference: a bottleneck perfect matching per round.

Given every pairwise bandwidth, pair all nodes so that the slowest chosen
link is as fast as possible (and, among those, the total bandwidth is
largest).  Connectivity guard: when the links used in the last ``t_thres``
rounds do not form a connected graph, only pairs *not* used in those rounds
may be chosen, so that information keeps reaching every part of the swarm.
Only a simulator with the full bandwidth matrix can run this.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import networkx as nx
import numpy as np

Pair = tuple[int, int]


def bottleneck_matching(bandwidth: np.ndarray, allowed: np.ndarray | None = None) -> list[Pair]:
    """A maximum-cardinality matching maximising its weakest link.

    ``bandwidth`` is a symmetric n x n matrix; ``allowed`` an optional
    boolean mask of usable pairs.  Returns pairs ``(i, j)`` with ``i < j``,
    sorted.  With odd n (or a mask that allows less) fewer nodes are matched.
    """
    n = bandwidth.shape[0]
    mask = np.ones((n, n), dtype=bool) if allowed is None else allowed.copy()
    np.fill_diagonal(mask, False)
    rows, cols = np.nonzero(np.triu(mask, 1))
    if rows.size == 0:
        return []
    weights = bandwidth[rows, cols]
    target = len(nx.max_weight_matching(_graph(rows, cols, weights), maxcardinality=True))
    thresholds = np.unique(weights)
    low, high = 0, thresholds.size - 1  # find the largest feasible threshold
    while low < high:
        mid = (low + high + 1) // 2
        keep = weights >= thresholds[mid]
        graph = _graph(rows[keep], cols[keep], weights[keep])
        if len(nx.max_weight_matching(graph, maxcardinality=True)) == target:
            low = mid
        else:
            high = mid - 1
    keep = weights >= thresholds[low]
    matching = nx.max_weight_matching(
        _graph(rows[keep], cols[keep], weights[keep]), maxcardinality=True
    )
    return sorted((min(a, b), max(a, b)) for a, b in matching)


def _graph(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> nx.Graph[int]:
    graph: nx.Graph[int] = nx.Graph()
    graph.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), weights.tolist(), strict=True))
    return graph


class OracleMatching:
    """Stateful across rounds (it remembers the last ``t_thres`` matchings)."""

    name: ClassVar[str] = "oracle-matching"

    def __init__(self, t_thres: int = 5) -> None:
        self.t_thres = t_thres
        self.history: deque[list[Pair]] = deque(maxlen=t_thres)

    def match(self, bandwidth: np.ndarray) -> list[Pair]:
        n = bandwidth.shape[0]
        recent = np.zeros((n, n), dtype=bool)
        for pairs in self.history:
            for i, j in pairs:
                recent[i, j] = recent[j, i] = True
        allowed = None
        if len(self.history) == self.t_thres and not _connected(recent):
            allowed = ~recent
        pairs = bottleneck_matching(bandwidth, allowed)
        if allowed is not None and len(pairs) < n // 2:
            pairs = bottleneck_matching(bandwidth)  # the guard cannot be met this round
        self.history.append(pairs)
        return pairs


def _connected(adjacency: np.ndarray) -> bool:
    graph = nx.from_numpy_array(adjacency.astype(int))
    return bool(nx.is_connected(graph))
