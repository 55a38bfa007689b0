"""How long an exchange may take, from its payload and the link estimate.

A partner that stalls must not hold our one exchange slot, nor our
training, for the idle timeout: every wait inside an exchange gets a
deadline sized to what is actually in flight.
"""

from __future__ import annotations

from dataclasses import dataclass

from gossipfl.topology.links import LinkEstimate


@dataclass(frozen=True)
class DeadlinePolicy:
    """``floor_s + slack * expected``, at most ``cap_s``, where ``expected``
    is the estimated time to move ``out_bytes`` one way and ``back_bytes``
    the other on ``link``.  The floor absorbs scheduling delays on a busy
    host; the slack absorbs an estimate that is off by a few times."""

    cap_s: float = 30.0
    floor_s: float = 2.0
    slack: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.floor_s <= self.cap_s or self.slack < 1:
            raise ValueError("need 0 < floor_s <= cap_s and slack >= 1")

    def seconds(self, link: LinkEstimate, out_bytes: int, back_bytes: int) -> float:
        expected = link.transfer_time(out_bytes) + link.transfer_time(back_bytes)
        return min(self.cap_s, self.floor_s + self.slack * expected)
