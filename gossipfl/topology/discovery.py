"""Discovery: who else is out there.  An interface, a pure parser for what
peers announce, and two implementations that need no network: an in-memory
hub (tests, simnet) and static seeds.  mDNS lives in :mod:`.mdns`.

Events flow into the node as :class:`Joined` / :class:`Left` on a trio
memory channel; the node folds them into its :class:`PeerTable`.
"""

from __future__ import annotations

import math
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

import structlog
import trio

log = structlog.get_logger("gossipfl.discovery")
MAX_TXT_VALUE: Final = 128  # longer values are not ours


@dataclass(frozen=True)
class Announcement:
    """What a node tells the network about itself."""

    node_id: str
    swarm_id: str
    protocol_version: int
    host: str
    port: int


@dataclass(frozen=True)
class Joined:
    peer: Announcement


@dataclass(frozen=True)
class Left:
    """The announcement of ``node_id`` at ``address`` (if known) is gone."""

    node_id: str
    address: tuple[str, int] | None = None


DiscoveryEvent = Joined | Left


class Discovery(Protocol):
    """Announces this node and reports others until cancelled."""

    async def run(
        self, events: trio.MemorySendChannel[DiscoveryEvent], *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Start announcing, call ``task_status.started()`` once this node is
        announced, then send events until cancelled.  Cancellation
        withdraws the announcement (best effort, bounded in time)."""
        ...


def _hex(value: str, length: int) -> bool:
    return len(value) == length and all(c in string.hexdigits for c in value)


def parse_announcement(
    properties: Mapping[bytes, bytes | None], host: str, *, swarm_id: str, protocol_version: int
) -> Announcement | str:
    """Validate a peer's TXT record.  Returns the announcement, or a reason
    to ignore it (another swarm or version, malformed or oversized)."""
    values: dict[str, str] = {}
    for key in (b"node_id", b"swarm_id", b"version", b"port"):
        raw = properties.get(key)
        if raw is None:
            return f"missing {key.decode()}"
        if len(raw) > MAX_TXT_VALUE:
            return f"{key.decode()} is {len(raw)} bytes long"
        try:
            values[key.decode()] = raw.decode("ascii")
        except UnicodeDecodeError:
            return f"{key.decode()} is not ASCII"
    if not _hex(values["node_id"], 64) or not _hex(values["swarm_id"], 32):
        return "malformed node_id or swarm_id"
    if values["swarm_id"] != swarm_id:
        return f"another swarm ({values['swarm_id']})"
    if not (values["version"].isdigit() and values["port"].isdigit()):
        return "malformed version or port"
    if int(values["version"]) != protocol_version:
        return f"protocol version {values['version']}, we speak {protocol_version}"
    port = int(values["port"])
    if not 0 < port < 65536:
        return f"port {port} out of range"
    return Announcement(values["node_id"], values["swarm_id"], protocol_version, host, port)


def announcement_txt(own: Announcement) -> dict[str, str]:
    return {
        "node_id": own.node_id,
        "swarm_id": own.swarm_id,
        "version": str(own.protocol_version),
        "port": str(own.port),
    }


class DiscoveryHub:
    """A shared in-memory "network" for :class:`InMemoryDiscovery`."""

    def __init__(self) -> None:
        # A member that crashed keeps its announcement (like a stale mDNS
        # record) but no longer listens: its channel is None.
        self._members: dict[
            str, tuple[Announcement, trio.MemorySendChannel[DiscoveryEvent] | None]
        ] = {}

    def _broadcast(self, sender: Announcement, event: DiscoveryEvent) -> None:
        for node_id, (member, channel) in self._members.items():
            if node_id != sender.node_id and member.swarm_id == sender.swarm_id and channel:
                channel.send_nowait(event)

    def join(self, own: Announcement, events: trio.MemorySendChannel[DiscoveryEvent]) -> None:
        for announcement, _ in self._members.values():
            if announcement.swarm_id == own.swarm_id:
                events.send_nowait(Joined(announcement))
        self._members[own.node_id] = (own, events)
        self._broadcast(own, Joined(own))

    def close(self) -> None:
        """The end of a simulated run: nobody hears of anyone any more, so
        a thousand members leaving cost nothing (each would tell all the
        others)."""
        self._members.clear()

    def leave(self, node_id: str, *, withdraw: bool = True) -> None:
        """The member stops listening; with ``withdraw`` its announcement
        goes too and the others hear that it left."""
        member = self._members.pop(node_id, None)
        if member is None:
            return
        if withdraw:
            own = member[0]
            self._broadcast(own, Left(node_id, (own.host, own.port)))
        else:
            self._members[node_id] = (member[0], None)


class InMemoryDiscovery:
    """Discovery over a :class:`DiscoveryHub`: instant, lossless, no sockets.
    Event channels must be unbounded (``open_memory_channel(math.inf)``)."""

    def __init__(self, hub: DiscoveryHub, own: Announcement) -> None:
        self.hub = hub
        self.own = own
        self.withdraw_on_exit = True  # False: exit like a crash, leaving the announcement

    async def run(
        self, events: trio.MemorySendChannel[DiscoveryEvent], *, task_status: trio.TaskStatus[None]
    ) -> None:
        self.hub.join(self.own, events)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.hub.leave(self.own.node_id, withdraw=self.withdraw_on_exit)


Probe = Callable[[str, int], Awaitable[Announcement]]


class SeedIsSelfError(Exception):
    """The seed is this very node (a config shared by the whole swarm lists
    every seed, its own address among them)."""


class SeedDiscovery:
    """Static ``host:port`` seeds for networks without multicast.

    A seed's node id is unknown until contacted: ``probe`` (supplied by the
    node: dial, TLS, hello) returns its announcement or raises.  Failed
    seeds are retried with exponential backoff; found ones are not probed
    again (the peer table tracks them from then on), nor is one that turns
    out to be the node itself (:class:`SeedIsSelfError`).
    """

    def __init__(
        self,
        seeds: list[tuple[str, int]],
        probe: Probe,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        self.seeds = seeds
        self.probe = probe
        self.base_delay = base_delay
        self.max_delay = max_delay

    async def run(
        self, events: trio.MemorySendChannel[DiscoveryEvent], *, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            for host, port in self.seeds:
                nursery.start_soon(self._follow, host, port, events)

    async def _follow(
        self, host: str, port: int, events: trio.MemorySendChannel[DiscoveryEvent]
    ) -> None:
        delay = self.base_delay
        while True:
            try:
                announcement = await self.probe(host, port)
            except SeedIsSelfError:
                log.info("seed_is_self", seed=f"{host}:{port}")
                return
            except Exception as exc:
                log.info("seed_unreachable", seed=f"{host}:{port}", reason=str(exc), retry_in=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            await events.send(Joined(announcement))
            return


class CombinedDiscovery:
    """Several discoveries at once (mDNS and static seeds)."""

    def __init__(self, parts: list[Discovery]) -> None:
        self.parts = parts

    async def run(
        self, events: trio.MemorySendChannel[DiscoveryEvent], *, task_status: trio.TaskStatus[None]
    ) -> None:
        async with trio.open_nursery() as nursery:
            for part in self.parts:
                await nursery.start(part.run, events)
            task_status.started()


def unbounded_channel() -> tuple[
    trio.MemorySendChannel[DiscoveryEvent], trio.MemoryReceiveChannel[DiscoveryEvent]
]:
    return trio.open_memory_channel[DiscoveryEvent](math.inf)
