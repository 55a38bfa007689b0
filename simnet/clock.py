"""Virtual time for a discrete-event simulation: :class:`EventClock`.

``trio.testing.MockClock(autojump_threshold=0)`` does the same job, but
each jump costs its run loop two passes (one to notice that every task is
blocked, one more to wake the tasks whose deadline the jump reached), and
each pass polls for I/O.  This clock jumps as soon as the loop asks how
long to sleep until the next deadline, so a timer event costs one pass: a
tenth of a 1000-peer simulation's wall time went to those extra polls.

It needs a run where only timers wake tasks: no sockets, no threads, and
no ``trio.testing.wait_all_tasks_blocked`` (it would see time jump first).
simnet's runs are such runs; tests that need those use ``MockClock``.
"""

from __future__ import annotations

import math
from typing import Final

import trio

# What the run loop is told to sleep when no deadline is set at all: it
# only wakes for I/O then, which a simulation does not have (a hang).
_FOREVER: Final = 86400.0


class EventClock(trio.abc.Clock):
    """Time stands still while any task can run and jumps to the next
    deadline as soon as none can; it never depends on the wall clock."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        # Asked only when no task is runnable: the loop would sleep now.
        if deadline == math.inf:
            return _FOREVER
        self._now = max(self._now, deadline)
        return 0.0
