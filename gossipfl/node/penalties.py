"""Which partners an initiator leaves alone for a while after a failed
exchange, and why.

A partner that lets an exchange of ours run out a deadline sized to it is
not chosen again for ``penalty_s`` (not the 1 s, 2 s, 4 s... of a failed
contact, which one success resets): while we wait we are busy to
everyone, so a member that greets and then stalls, or answers one exchange
in two, held a node busy most of the time.  The responder's rule for a
partner that never commits is the same (fairness.py).

But a pulled cable looks the same from both ends, and penalising it shut
a host out for 30 s after its link came back (docs/reliability.md):

- contacts failing with several proven partners since our last exchange
  point to our own link: those partners are not penalised, and are
  retried at least every ``own_link_retry_s`` rather than after a backoff
  grown through the whole outage (an outsider's unproven announcements
  fail by the hundred and say nothing about our link, so they do not
  count);
- a penalised partner that then completes an exchange it started with us
  is back and answering: its penalty goes, once per ``forgiven_every_s``
  (a staller that exchanges honestly now and then gains one more stall
  per interval).

Pure logic: the clock is injected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple


class Verdict(NamedTuple):
    """What one failed contact costs the partner."""

    penalised: bool  # not chosen for ``penalty_s``
    own_link: bool  # others failed too since our last exchange
    retry_cap_s: float | None  # back off at most this long (``None``: as usual)


@dataclass
class Penalties:
    clock: Callable[[], float]
    penalty_s: float = 30.0
    forgiven_every_s: float = 600.0
    own_link_retry_s: float = 4.0
    max_entries: int = 4096  # forgotten penalties are pruned beyond this
    _until: dict[str, float] = field(default_factory=dict)  # partner -> not before
    _forgiven: dict[str, float] = field(default_factory=dict)  # partner -> not again before
    _failing: set[str] = field(default_factory=set)  # proven, failed since our last exchange

    def failed(self, partner: str, *, stalled: bool, proven: bool) -> Verdict:
        """A contact with ``partner`` failed; ``stalled``: it ran out the
        exchange's deadline (rather than being refused or unreachable)."""
        own_link = proven and bool(self._failing - {partner})
        if proven:
            self._failing.add(partner)
        penalised = stalled and not own_link
        if penalised:
            self._until[partner] = self.clock() + self.penalty_s
        return Verdict(penalised, own_link, self.own_link_retry_s if own_link else None)

    def exchanged(self, partner: str, *, they_started: bool) -> None:
        """An exchange with ``partner`` merged: our link works; if the
        partner started it, it answers again."""
        self._failing.clear()
        now = self.clock()
        if (
            they_started
            and partner in self._until
            and now >= self._forgiven.get(partner, -math.inf)
        ):
            del self._until[partner]
            self._forgiven[partner] = now + self.forgiven_every_s
            if len(self._forgiven) > self.max_entries:
                self._forgiven = {p: t for p, t in self._forgiven.items() if t > now}

    def barred(self) -> set[str]:
        """Partners not to choose now."""
        if not self._until:
            return set()
        now = self.clock()
        self._until = {p: until for p, until in self._until.items() if until > now}
        return set(self._until)

    def next_free(self) -> float:
        """When the first penalty runs out (``inf`` if none runs)."""
        return min(self._until.values(), default=math.inf)
