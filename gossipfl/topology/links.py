"""Link estimates: round-trip time and bandwidth to one peer, fitted to
the round trips actually made.

Every request and its answer is a sample: ``seconds`` for ``nbytes``
moved both ways together (a hello and the peer's hello, an exchange and
its reply, a reply and its commit, a model request and the model).  The
estimate fits ``seconds = rtt + nbytes / bandwidth`` by least squares over
exponentially weighted samples, so recent round trips count most.  Small
round trips pin the RTT; large ones, the bandwidth.  While all samples
have about the same size the two cannot be told apart: the RTT is then
fitted under the last known bandwidth (the prior at first), and the
bandwidth stays unknown.

Pure values: every observation returns a new :class:`LinkEstimate`.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

# A link never measured is assumed to be a 10 Mbit/s, 50 ms link; selectors
# explore such links optimistically rather than trusting this prior.
PRIOR_BANDWIDTH: Final = 1.25e6  # bytes per second
PRIOR_RTT: Final = 0.05  # seconds
# Weight of the newest sample; older ones fade by (1 - ALPHA) per sample.
ALPHA: Final = 0.2
# Sizes must spread by this share of their mean (standard deviation) for
# the bandwidth to be fitted rather than assumed.
MIN_SPREAD: Final = 0.1
# Bytes/s (10 Gbit/s): what a fit that finds no measurable cost per byte
# says, as on loopback, where a round trip is all scheduling.
FASTEST: Final = 1.25e9
# A round trip that takes this many times longer than the fit predicts was
# most likely held up (the peer was busy, the link shared): it is left out,
# unless OUTLIERS_TO_REFIT such come in a row (then the link has changed).
OUTLIER_FACTOR: Final = 3.0
# Seconds: no round trip between two hosts takes less (loopback takes tens
# of microseconds).  A fit whose intercept falls below it saw scheduling
# noise, not latency: the RTT is too small to tell, not zero.
MIN_RTT: Final = 1e-5
OUTLIERS_TO_REFIT: Final = 3

# Standard errors a fitted cost per byte must stand clear of zero by.
CONFIDENCE: Final = 2.0

_Sums = tuple[float, float, float, float, float, float]  # weight, x, y, x*x, x*y, y*y


class LinkEstimate(NamedTuple):
    """What is known about the link to one peer; immutable.  A named tuple
    for the reason :class:`~gossipfl.topology.peers.Peer` is one: a node of
    a large swarm holds one per peer and refits one per exchange."""

    bandwidth: float = PRIOR_BANDWIDTH  # bytes per second
    rtt: float = PRIOR_RTT  # seconds
    samples: int = 0  # round trips observed
    fitted: bool = False  # the bandwidth comes from samples, not the prior
    outliers: int = 0  # round trips left out in a row
    sums: _Sums = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def known(self) -> bool:
        """Whether the bandwidth was measured."""
        return self.fitted

    @property
    def measured(self) -> bool:
        """Whether the RTT was measured."""
        return self.samples > 0

    def observe(self, nbytes: int, seconds: float) -> LinkEstimate:
        """Fold in one round trip that moved ``nbytes`` (both ways) in
        ``seconds``."""
        if seconds <= 0 or nbytes < 0:
            return self
        base = self
        if self.fitted and seconds > OUTLIER_FACTOR * self.round_trip(nbytes):
            if self.outliers + 1 < OUTLIERS_TO_REFIT:
                return self._replace(outliers=self.outliers + 1)
            base = LinkEstimate()  # the link changed: start over
        return base._fold(nbytes, seconds)

    def _fold(self, nbytes: int, seconds: float) -> LinkEstimate:
        keep = 1.0 - ALPHA
        w, sx, sy, sxx, sxy, syy = (keep * s for s in self.sums)
        x, y = float(nbytes), seconds
        sums = (w + 1.0, sx + x, sy + y, sxx + x * x, sxy + x * y, syy + y * y)
        w, sx, sy, sxx, sxy, syy = sums
        mean_x, mean_y = sx / w, sy / w
        var_x = max(sxx / w - mean_x * mean_x, 0.0)
        bandwidth, fitted = self.bandwidth, self.fitted
        if var_x > (MIN_SPREAD * mean_x) ** 2:
            covariance = sxy / w - mean_x * mean_y
            per_byte = covariance / var_x
            # Round trips of a few hundred bytes differ mostly by noise: a
            # cost per byte within CONFIDENCE standard errors of its own
            # noise was not measured, and taken as one it made a 10 Gbit/s
            # link of many a noisy 2 Mbit/s one (on separate hosts).  Then
            # the bandwidth stays as it was, as when sizes do not spread.
            residual = max(syy / w - mean_y * mean_y - covariance * per_byte, 0.0)
            error = math.sqrt(residual / (w * var_x))
            if abs(per_byte) > CONFIDENCE * error:
                bandwidth, fitted = 1.0 / per_byte if per_byte > 1.0 / FASTEST else FASTEST, True
        rtt = mean_y - mean_x / bandwidth
        if rtt < MIN_RTT:  # noise: no latency at all explains the samples best
            rtt = MIN_RTT
            if fitted and sxy > 0:
                bandwidth = min(sxx / sxy, FASTEST)
        return self._replace(
            bandwidth=bandwidth,
            rtt=rtt,
            samples=self.samples + 1,
            fitted=fitted,
            outliers=0,
            sums=sums,
        )

    def round_trip(self, nbytes: float) -> float:
        """Expected seconds for a round trip moving ``nbytes`` both ways."""
        return self.rtt + nbytes / self.bandwidth

    def transfer_time(self, nbytes: float) -> float:
        """Expected seconds to move ``nbytes`` one way."""
        return self.rtt / 2 + nbytes / self.bandwidth
