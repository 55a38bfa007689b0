"""Link estimates: bandwidth and RTT as EWMAs of measured transfers.

Pure values: every observation returns a new :class:`LinkEstimate`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

# A link never measured is assumed to be a 10 Mbit/s, 50 ms link; selectors
# explore such links optimistically rather than trusting this prior.
PRIOR_BANDWIDTH: Final = 1.25e6  # bytes per second
PRIOR_RTT: Final = 0.05  # seconds
# Transfers smaller than this say more about latency than about bandwidth.
MIN_TRANSFER_BYTES: Final = 16 * 1024


@dataclass(frozen=True)
class LinkEstimate:
    """What is known about the link to one peer."""

    bandwidth: float = PRIOR_BANDWIDTH  # bytes per second
    rtt: float = PRIOR_RTT  # seconds
    samples: int = 0  # bandwidth observations so far

    @property
    def confidence(self) -> float:
        """0 for the prior, approaching 1 as samples accumulate."""
        return self.samples / (self.samples + 3)

    @property
    def known(self) -> bool:
        return self.samples > 0

    def observe_transfer(self, nbytes: int, seconds: float, alpha: float = 0.3) -> LinkEstimate:
        """Fold in one direction of an exchange: ``nbytes`` moved in
        ``seconds``.  The first sample replaces the prior outright."""
        if seconds <= 0 or nbytes < MIN_TRANSFER_BYTES:
            return self
        rate = nbytes / max(seconds - self.rtt / 2, seconds / 2)
        if not self.known:
            return replace(self, bandwidth=rate, samples=1)
        return replace(
            self, bandwidth=(1 - alpha) * self.bandwidth + alpha * rate, samples=self.samples + 1
        )

    def observe_rtt(self, seconds: float, alpha: float = 0.3) -> LinkEstimate:
        if seconds <= 0:
            return self
        return replace(self, rtt=(1 - alpha) * self.rtt + alpha * seconds)

    def transfer_time(self, nbytes: float) -> float:
        """Expected seconds to move ``nbytes`` one way."""
        return self.rtt / 2 + nbytes / self.bandwidth
