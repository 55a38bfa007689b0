"""Per-peer fairness: no member may keep a node's one exchange slot, or its
uplink, to itself.

A node serves one exchange at a time.  A member that takes an exchange and
never commits holds that slot until the exchange's deadline, and used to
be able to start the next one at once, round after round: the node was
busy to everyone else.  And a model pull, a few bytes asking for the whole
model, was served to anyone, any number of times.  So, as a responder:

- a peer that let an exchange run out its deadline without its commit
  (it stalled, or its link died) gets no slot for ``penalty_s``.  A peer
  that hung up at once is not barred: it held the slot for no time.  A
  host whose cable was pulled had its requests, long given up, delivered
  by TCP when the link came back, each followed by the close; every
  partner barred it, and it sat out 30 s after the heal;
- a peer that held the slot while others were answered ``busy`` does not
  get it again for ``gap_s``: the others go first;
- model pulls: one per peer per ``pull_interval_s``, and at most
  ``pulls_per_interval`` from everyone together.

Refusals are ``busy`` answers, which honest peers already handle (they try
another partner).  Pure logic: the clock is injected.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Fairness:
    clock: Callable[[], float]
    penalty_s: float = 30.0
    gap_s: float = 0.15  # a busy peer retries within 1.5 x busy_retry_s (0.1 s)
    pull_interval_s: float = 60.0
    pulls_per_interval: int = 10
    _barred: dict[str, float] = field(default_factory=dict)  # peer -> no slot before
    _holder: str | None = None
    _others_waited = False
    _pulls: dict[str, float] = field(default_factory=dict)  # peer -> its last pull
    _recent_pulls: collections.deque[float] = field(default_factory=collections.deque)
    refused_exchanges: int = 0
    refused_pulls: int = 0

    def may_exchange(self, peer: str) -> bool:
        """Whether ``peer`` may take the slot now (if it is free)."""
        barred = self._barred.get(peer)
        if barred is not None and self.clock() < barred:
            self.refused_exchanges += 1
            return False
        self._barred.pop(peer, None)
        return True

    def busy_for(self, peer: str) -> None:
        """``peer`` was answered busy: someone else holds the slot."""
        if self._holder is not None and peer != self._holder:
            self._others_waited = True

    def started(self, peer: str) -> None:
        self._holder, self._others_waited = peer, False

    def ended(self, peer: str, *, committed: bool, stalled: bool = False) -> None:
        """``peer``'s exchange ended; ``stalled``: it ran out its deadline."""
        now = self.clock()
        if stalled and not committed:
            self._barred[peer] = now + self.penalty_s
        elif self._others_waited:
            self._barred[peer] = max(self._barred.get(peer, 0.0), now + self.gap_s)
        self._holder, self._others_waited = None, False
        if len(self._barred) > 1024:  # forget bars that have run out
            self._barred = {p: t for p, t in self._barred.items() if t > now}

    def may_pull(self, peer: str) -> bool:
        """Whether to serve ``peer`` a full model now; counts it if so."""
        now = self.clock()
        while self._recent_pulls and self._recent_pulls[0] <= now - self.pull_interval_s:
            self._recent_pulls.popleft()
        last = self._pulls.get(peer)
        if (last is not None and now - last < self.pull_interval_s) or len(
            self._recent_pulls
        ) >= self.pulls_per_interval:
            self.refused_pulls += 1
            return False
        self._pulls[peer] = now
        self._recent_pulls.append(now)
        if len(self._pulls) > 1024:
            self._pulls = {p: t for p, t in self._pulls.items() if now - t < self.pull_interval_s}
        return True
