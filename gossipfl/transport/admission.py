"""What anyone who can reach a node's port may cost it, before it has
proved anything: caps on connections open at once, on TLS handshakes in
progress at once, and on the rate of handshakes per address.

Without them an outsider could hold hundreds of connections open in the
handshake (each a file descriptor until the handshake deadline) and run a
node out of descriptors, or make it spend its CPU on handshakes.  A
connection over a cap is closed at once, before the handshake, and counted
by reason.

A member (a valid certificate) passes the handshake and may then hold a
connection for the idle timeout: one member used to fill all 512 and so
shut out every peer that had to dial again (bench/attacks.py, "connection
hoard").  So one node id may hold ``max_per_node`` connections at once
(an honest peer needs one, and briefly a second); one more is closed right
after its handshake.  Pure logic: the clock is injected.
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
    max_per_node: int = 8  # connections one authenticated node id holds at once
    connections: int = 0
    handshakes: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # host -> tokens, at
    _per_node: collections.Counter[str] = field(default_factory=collections.Counter)

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

    def admit_node(self, node_id: str) -> str | None:
        """Why a connection whose handshake proved ``node_id`` is refused,
        or ``None`` (then it counts until :meth:`node_closed`)."""
        if self._per_node[node_id] >= self.max_per_node:
            self.refused[f"{self.max_per_node} connections from one node"] += 1
            return f"{self.max_per_node} connections from node {node_id[:12]} open already"
        self._per_node[node_id] += 1
        return None

    def node_closed(self, node_id: str) -> None:
        self._per_node[node_id] -= 1
        if self._per_node[node_id] <= 0:
            del self._per_node[node_id]  # bounded by the connections open, not by all ever seen

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
