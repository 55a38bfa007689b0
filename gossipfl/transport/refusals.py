"""Refused handshakes, logged without letting an outsider flood the log.

Anyone who can reach the port can open connections that fail the TLS
handshake (no certificate, another swarm's, garbage), each of which used to
write a warning: 400 connections, 400 lines.  Now the first refusal from an
address (host, any port) is logged at once, the ones that follow within
``interval_s`` are counted, and the next line for that address says how
many it stood for.  Pure logic: the clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Final

import structlog

log = structlog.get_logger("gossipfl.transport")
MAX_TRACKED: Final = 4096  # addresses remembered; older windows are dropped first


class LineThrottle:
    """One log line per key per ``interval_s``: :meth:`admit` says whether
    to write one now, and how many it held back since the last.  Keeps at
    most ``max_keys`` windows (the oldest go first).  Pure logic: the clock
    is injected."""

    def __init__(
        self, clock: Callable[[], float], interval_s: float = 60.0, max_keys: int = MAX_TRACKED
    ) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._windows: dict[Hashable, tuple[float, int]] = {}  # key -> (logged at, held since)

    def __len__(self) -> int:
        return len(self._windows)

    def admit(self, key: Hashable) -> int | None:
        """``None``: hold this line back (counted).  Else write it, saying
        it stands for the returned number of lines held back before it."""
        now = self.clock()
        window = self._windows.get(key)
        if window is not None and now - window[0] < self.interval_s:
            self._windows[key] = (window[0], window[1] + 1)
            return None
        self._windows.pop(key, None)  # re-inserted last: the dict stays oldest first
        self._windows[key] = (now, 0)
        while len(self._windows) > self.max_keys:
            del self._windows[next(iter(self._windows))]
        return window[1] if window else 0


class RefusalLog:
    def __init__(self, clock: Callable[[], float], interval_s: float = 60.0) -> None:
        self.total = 0  # refusals counted, logged or not
        self._lines = LineThrottle(clock, interval_s)

    @property
    def tracked(self) -> int:
        """Addresses whose window is remembered."""
        return len(self._lines)

    def refused(self, address: str, reason: str) -> None:
        """A handshake from ``address`` (``host:port``) failed for ``reason``."""
        self.total += 1
        held = self._lines.admit(address.rsplit(":", 1)[0])
        if held is None:
            return
        extra = {"and_since_last_line": held} if held else {}
        log.warning("handshake_refused", peer=address, reason=reason, **extra)
