"""mDNS discovery with python-zeroconf.

zeroconf's synchronous API runs on its own thread.  Browser callbacks run
there too and must never block: each one only hands ``(name, change)`` to
trio through the run's :class:`trio.lowlevel.TrioToken`.  Resolving a name
and (un)registering, which block, run in ``trio.to_thread``.
"""

from __future__ import annotations

import contextlib
import math
import socket
from ipaddress import IPv4Interface
from typing import Any

import structlog
import trio
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from gossipfl.topology.addresses import choose_address, local_interfaces
from gossipfl.topology.discovery import (
    Announcement,
    DiscoveryEvent,
    Joined,
    Left,
    announcement_txt,
    parse_announcement,
)

log = structlog.get_logger("gossipfl.discovery")
SERVICE_TYPE = "_gossipfl._tcp.local."
_RESOLVE_TIMEOUT_MS = 3000


class MdnsDiscovery:
    """Announce this node and browse for others of the same swarm.

    ``interfaces``: IPv4 addresses to use, or ``None`` for all IPv4
    interfaces.  ``hosts``: the addresses to announce (default: the
    announcement's host); see :func:`~gossipfl.topology.addresses.announced_hosts`.
    ``local``: this host's interfaces, to pick the address of a peer that
    announces several (default: asked of the system).  ``service_type`` may
    be changed to keep swarms (or test runs) apart on one network.
    """

    def __init__(
        self,
        own: Announcement,
        *,
        interfaces: list[str] | None = None,
        hosts: tuple[str, ...] = (),
        local: list[IPv4Interface] | None = None,
        service_type: str = SERVICE_TYPE,
    ) -> None:
        self.own = own
        self.interfaces = interfaces
        self.hosts = hosts or (own.host,)
        self.local = local if local is not None else local_interfaces()
        self.service_type = service_type
        self.instance = f"{own.node_id[:16]}.{service_type}"

    def service_info(self) -> ServiceInfo:
        """What this node registers: its hosts, port and TXT record."""
        return ServiceInfo(
            self.service_type,
            self.instance,
            addresses=[socket.inet_aton(host) for host in self.hosts],
            port=self.own.port,
            properties=announcement_txt(self.own),
            server=f"{self.own.node_id[:16]}.local.",
        )

    async def run(
        self, events: trio.MemorySendChannel[DiscoveryEvent], *, task_status: trio.TaskStatus[None]
    ) -> None:
        token = trio.lowlevel.current_trio_token()
        changes_in, changes = trio.open_memory_channel[tuple[str, ServiceStateChange]](math.inf)

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            with contextlib.suppress(trio.RunFinishedError):  # zeroconf's thread: never block
                token.run_sync_soon(changes_in.send_nowait, (name, state_change))

        interfaces: Any = InterfaceChoice.All if self.interfaces is None else self.interfaces
        zc = await trio.to_thread.run_sync(
            lambda: Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        )
        info = self.service_info()
        browser: ServiceBrowser | None = None
        try:
            await trio.to_thread.run_sync(zc.register_service, info)
            browser = ServiceBrowser(zc, self.service_type, handlers=[on_change])
            task_status.started()
            names: dict[str, Announcement] = {}  # instance name -> what it announced
            async for name, change in changes:
                if name == self.instance:
                    continue
                if change is ServiceStateChange.Removed:
                    gone = names.pop(name, None)
                    if gone is not None:  # only that announcement, at its address
                        await events.send(Left(gone.node_id, (gone.host, gone.port)))
                    continue
                peer = await self._resolve(zc, name)
                if peer is not None:
                    names[name] = peer
                    await events.send(Joined(peer))
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await trio.to_thread.run_sync(_shutdown, zc, info, browser)

    async def _resolve(self, zc: Zeroconf, name: str) -> Announcement | None:
        info = await trio.to_thread.run_sync(
            zc.get_service_info, self.service_type, name, _RESOLVE_TIMEOUT_MS
        )
        if info is None:
            log.debug("mdns_unresolved", name=name)
            return None
        address = choose_address(info.parsed_addresses(IPVersion.V4Only), self.local)
        if address is None:
            log.debug("mdns_ignored", name=name, reason="no IPv4 address")
            return None
        parsed = parse_announcement(
            info.properties,
            address,
            swarm_id=self.own.swarm_id,
            protocol_version=self.own.protocol_version,
        )
        if isinstance(parsed, str):
            log.debug("mdns_ignored", name=name, reason=parsed)
            return None
        if info.port != parsed.port:
            log.debug("mdns_ignored", name=name, reason="SRV port and TXT port disagree")
            return None
        return parsed


def _shutdown(zc: Zeroconf, info: ServiceInfo, browser: ServiceBrowser | None) -> None:
    if browser is not None:
        browser.cancel()
    try:
        zc.unregister_service(info)
    finally:
        zc.close()
