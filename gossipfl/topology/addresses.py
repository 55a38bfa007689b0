"""Which addresses a node announces, and which announced address to dial.

A daemon listening on every interface (``0.0.0.0``, the default) must not
announce ``127.0.0.1``: every peer on another host would dial its own
loopback.  It announces the IPv4 addresses of the interfaces mDNS runs on;
a peer with several (a LAN, a VPN, a container bridge) picks the one on a
network it shares.  Pure functions; :func:`local_interfaces` is the only
one that asks the operating system.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface

WILDCARDS = ("", "0.0.0.0")


def local_interfaces() -> list[IPv4Interface]:
    """This host's IPv4 addresses with their networks, loopback included."""
    import ifaddr  # zeroconf's own interface lister

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4 and isinstance(ip.ip, str):
                found.append(IPv4Interface(f"{ip.ip}/{ip.network_prefix}"))
    return found


def announced_hosts(
    listen_host: str,
    advertise_host: str,
    mdns_interfaces: Sequence[str],
    local: Sequence[IPv4Interface],
) -> tuple[str, ...]:
    """The hosts a node tells peers to dial, most preferred first.

    ``advertise_host`` wins when set (NAT, several networks).  A node bound
    to one address announces that one.  A node bound to every interface
    announces the addresses mDNS runs on (``mdns_interfaces``), or, when
    mDNS runs on all of them, every non-loopback address of this host;
    loopback only when the host has nothing else.
    """
    if advertise_host:
        return (advertise_host,)
    if listen_host not in WILDCARDS:
        return (listen_host,)
    if mdns_interfaces:
        return tuple(mdns_interfaces)
    outside = [str(i.ip) for i in local if not i.ip.is_loopback]
    return tuple(dict.fromkeys(outside)) or ("127.0.0.1",)


def choose_address(announced: Sequence[str], local: Sequence[IPv4Interface]) -> str | None:
    """The address to dial among those a peer announced, or ``None``.

    Prefers one on a network this host is on, then any other one, then one
    of this host's own addresses (a peer on this host), then loopback.  An
    address equal to one of ours comes late because on another host it is
    most likely a private bridge that happens to share our address.
    """
    candidates = []
    for text in announced:
        try:
            candidates.append(IPv4Address(text))
        except ipaddress.AddressValueError:
            continue
    ours = {i.ip for i in local}
    outside = [a for a in candidates if not a.is_loopback and a not in ours]
    shared = [a for a in outside if any(a in i.network for i in local if not i.ip.is_loopback)]
    same_host = [a for a in candidates if not a.is_loopback and a in ours]
    loopback = [a for a in candidates if a.is_loopback]
    for group in (shared, outside, same_host, loopback):
        if group:
            return str(group[0])
    return None


def unusable_address(
    listen_host: str,
    advertise_host: str,
    mdns_interfaces: Sequence[str],
    seed_hosts: Sequence[str],
    local: Sequence[IPv4Interface],
) -> str | None:
    """Why peers could not reach a node configured so, or ``None``.

    Caught at start-up, not after hours of a silent swarm: an address that
    is not this host's, and a node that would tell peers on other hosts to
    dial loopback (its seeds are on another host, so its peers are) or
    to dial an address it does not listen on.
    """
    ours = {str(i.ip) for i in local}
    listing = ", ".join(sorted(ours)) or "none"
    if listen_host not in WILDCARDS and listen_host not in ours:
        return (
            f"[node] listen host {listen_host} is not an address of this host (it has: "
            f"{listing}); listen on 0.0.0.0 for every interface"
        )
    for address in mdns_interfaces:
        if address not in ours:
            return (
                f"[discovery] interfaces: {address} is not an address of this host "
                f"(it has: {listing})"
            )
    if _loopback(listen_host) and advertise_host and not _loopback(advertise_host):
        return (
            f"[node] listen host {listen_host} takes connections from this host only, but "
            f"advertise_host {advertise_host} tells peers on other hosts to dial it; "
            "listen on 0.0.0.0"
        )
    announced = announced_hosts(listen_host, advertise_host, mdns_interfaces, local)
    remote = [h for h in seed_hosts if not _loopback(h) and h not in ours]
    if remote and all(_loopback(h) for h in announced):
        return (
            f"peers would be told to dial {announced[0]}, which on any other host is that "
            f"host itself, yet [discovery] seeds are on other hosts ({', '.join(remote)}); "
            "listen on 0.0.0.0 (the default), or set [node] advertise_host to this "
            "host's address on their network"
        )
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return IPv4Address(host).is_loopback
    except ipaddress.AddressValueError:
        return False  # a name: assume it resolves elsewhere
