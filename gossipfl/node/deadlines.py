"""How long an exchange may take, from its payload and the link estimate.

A partner that stalls must not hold our one exchange slot, nor our
training, for the idle timeout: every wait inside an exchange gets a
deadline sized to what is actually in flight.
"""

from __future__ import annotations

from dataclasses import dataclass

from gossipfl.topology.links import LinkEstimate
from gossipfl.transport.channel import SLOWEST_LINK_BPS


@dataclass(frozen=True)
class DeadlinePolicy:
    """``floor_s + slack * expected``, at most ``cap_s``, where ``expected``
    is the estimated time to move ``out_bytes`` one way and ``back_bytes``
    the other on ``link``.  The floor absorbs scheduling delays on a busy
    host; the slack absorbs an estimate that is off by a few times.  A link
    never measured is assumed to be as slow as ``unknown_bps`` (1 Mbit/s):
    a deadline too short for the first transfer would fail it before it is
    ever measured, again and again."""

    cap_s: float = 30.0
    floor_s: float = 2.0
    slack: float = 4.0
    unknown_bps: float = SLOWEST_LINK_BPS

    def __post_init__(self) -> None:
        if not 0 < self.floor_s <= self.cap_s or self.slack < 1 or self.unknown_bps <= 0:
            raise ValueError("need 0 < floor_s <= cap_s, slack >= 1 and unknown_bps > 0")

    def seconds(self, link: LinkEstimate, out_bytes: int, back_bytes: int) -> float:
        if link.known:
            expected = link.transfer_time(out_bytes) + link.transfer_time(back_bytes)
        else:
            expected = link.rtt + (out_bytes + back_bytes) / self.unknown_bps
        return min(self.cap_s, self.floor_s + self.slack * expected)

    def capped(self, seconds: float) -> bool:
        """Whether a deadline is the cap rather than sized to its payload."""
        return seconds >= self.cap_s
