"""What anyone who can reach a node's port may cost it, before it has
proved anything: caps on connections open at once, on TLS handshakes in
progress at once, and on the rate of handshakes per address.

Without them an outsider could hold hundreds of connections open in the
handshake (each a file descriptor until the handshake deadline) and run a
node out of descriptors, or make it spend its CPU on handshakes.  A
connection over a cap is closed at once, before the handshake, and counted
by reason.  Pure logic: the clock is injected.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Admission:
    clock: Callable[[], float]
    max_connections: int = 512  # open at once, handshaking or serving
    max_handshakes: int = 64  # TLS handshakes in progress at once
    per_address_rate: float = 10.0  # handshakes per second from one host, sustained
    per_address_burst: float = 50.0  # ... and at once
    connections: int = 0
    handshakes: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # host -> tokens, at

    def admit(self, host: str) -> str | None:
        """Why a new connection from ``host`` is refused, or ``None`` (then
        it counts as open until :meth:`closed`)."""
        reason = self._reason(host)
        if reason is not None:
            self.refused[reason] += 1
            return reason
        self.connections += 1
        return None

    def closed(self) -> None:
        self.connections -= 1

    def _reason(self, host: str) -> str | None:
        if self.connections >= self.max_connections:
            return f"{self.max_connections} connections open already"
        if self.handshakes >= self.max_handshakes:
            return f"{self.max_handshakes} handshakes in progress already"
        now = self.clock()
        tokens, at = self._buckets.get(host, (self.per_address_burst, now))
        tokens = min(self.per_address_burst, tokens + (now - at) * self.per_address_rate)
        if tokens < 1.0:
            self._buckets[host] = (tokens, now)
            return f"more than {self.per_address_rate:g} handshakes a second from {host}"
        self._buckets[host] = (tokens - 1.0, now)
        if len(self._buckets) > 4096:  # forget refilled buckets: they are the default
            rate, burst = self.per_address_rate, self.per_address_burst
            self._buckets = {
                h: (t, a) for h, (t, a) in self._buckets.items() if t + (now - a) * rate < burst
            }
        return None
