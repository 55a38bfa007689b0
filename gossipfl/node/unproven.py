"""How much of a node's time peers only an announcement vouches for may cost.

mDNS is unauthenticated: anyone on the LAN can announce hundreds of peers
that do not exist, at addresses that never answer.  The selector weighs
each such unproven peer no more than the lightest proven one, but there
can be a hundred of them for every real one, so by their number alone
they used to take almost every round, each one lost to a dial that fails
(at once, or after the 3 s an unproven address gets): a flood of fake
records stopped a swarm's exchanges (bench/attacks.py, "fake peers").

So time lost to unproven peers is budgeted: a round that ends without an
exchange because contacts with unproven peers failed costs its whole
duration (else such failed contacts cost only their own), paid out of a
bucket that refills at ``share`` seconds per second, up to ``burst_s``.
While the bucket is empty, rounds choose among proven peers only.  In a
swarm without fakes nothing fails and nothing changes: new peers are
dialled as soon as they are announced, and proven by that first dial.
Pure logic: the clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class UnprovenBudget:
    clock: Callable[[], float]
    share: float = 0.02  # of the node's time, at most, in the long run
    burst_s: float = 2.0  # at once: about one unproven dial that hangs
    lost_s: float = 0.0  # seconds lost to unproven peers, in all
    _tokens: float = field(init=False)
    _at: float | None = None  # the clock is first read on first use (inside trio)

    def __post_init__(self) -> None:
        if not (0 < self.share < 1 and self.burst_s > 0):
            raise ValueError("need 0 < share < 1 and burst_s > 0")
        self._tokens = self.burst_s

    def allowed(self) -> bool:
        """Whether a round may try unproven peers now."""
        self._refill()
        return self._tokens > 0

    def lost(self, seconds: float) -> None:
        """``seconds`` went to unproven peers that did not answer.  The debt
        is bounded (by ``burst_s``), so that a node which had nothing but
        unproven peers to try is not shut out of them for long after."""
        self._refill()
        self.lost_s += seconds
        self._tokens = max(self._tokens - seconds, -self.burst_s)

    def _refill(self) -> None:
        now = self.clock()
        elapsed = 0.0 if self._at is None else now - self._at
        self._tokens = min(self.burst_s, self._tokens + elapsed * self.share)
        self._at = now
