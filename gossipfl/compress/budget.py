"""Adaptive density: how many coordinates an exchange carries."""

from __future__ import annotations

import math

from gossipfl.compress.base import Compressor, clamp_k


def exchange_k(
    compressor: Compressor,
    dim: int,
    density: float,
    value_bytes: int,
    bandwidth_bps: float | None = None,
    budget_s: float | None = None,
) -> int:
    """``k`` = the smaller of ``density * dim`` and what a link of
    ``bandwidth_bps`` (bytes per second) carries within ``budget_s`` seconds.

    Without a bandwidth estimate or a budget only the density applies.
    Always at least 1 coordinate, so every exchange makes progress.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    k = clamp_k(math.ceil(density * dim), dim)
    if bandwidth_bps is None or budget_s is None:
        return k
    budget = bandwidth_bps * budget_s

    def cost(n: int) -> float:
        return compressor.index_bytes(dim, n) + n * value_bytes

    if cost(k) <= budget:
        return k
    low, high = 1, k  # cost is increasing in n: largest n with cost(n) <= budget
    while low < high:
        mid = (low + high + 1) // 2
        if cost(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low
