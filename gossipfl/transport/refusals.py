"""Refused handshakes, logged without letting an outsider flood the log.

Anyone who can reach the port can open connections that fail the TLS
handshake (no certificate, another swarm's, garbage), each of which used to
write a warning: 400 connections, 400 lines.  Now the first refusal from an
address (host, any port) is logged at once, the ones that follow within
``interval_s`` are counted, and the next line for that address says how
many it stood for.  Pure logic: the clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import structlog

log = structlog.get_logger("gossipfl.transport")
MAX_TRACKED: Final = 4096  # addresses remembered; older windows are dropped first


class RefusalLog:
    def __init__(self, clock: Callable[[], float], interval_s: float = 60.0) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self.total = 0  # refusals counted, logged or not
        self._windows: dict[str, tuple[float, int]] = {}  # host -> (logged at, since then)

    @property
    def tracked(self) -> int:
        """Addresses whose window is remembered."""
        return len(self._windows)

    def refused(self, address: str, reason: str) -> None:
        """A handshake from ``address`` (``host:port``) failed for ``reason``."""
        self.total += 1
        host = address.rsplit(":", 1)[0]
        now = self.clock()
        window = self._windows.get(host)
        if window is not None and now - window[0] < self.interval_s:
            self._windows[host] = (window[0], window[1] + 1)
            return
        extra = {"and_since_last_line": window[1]} if window and window[1] else {}
        log.warning("handshake_refused", peer=address, reason=reason, **extra)
        self._windows.pop(host, None)  # re-inserted last: the dict stays oldest first
        self._windows[host] = (now, 0)
        while len(self._windows) > MAX_TRACKED:
            del self._windows[next(iter(self._windows))]
