"""Discovery: the TXT parser, the in-memory hub, static seeds, and real mDNS
between separate processes on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import secrets
import signal
import subprocess
import sys
from ipaddress import IPv4Interface
from pathlib import Path

import pytest
import trio
import trio.testing

from gossipfl.topology.addresses import announced_hosts, choose_address, unusable_address
from gossipfl.topology.discovery import (
    Announcement,
    DiscoveryHub,
    InMemoryDiscovery,
    Joined,
    Left,
    SeedDiscovery,
    announcement_txt,
    parse_announcement,
    unbounded_channel,
)
from gossipfl.topology.mdns import MdnsDiscovery

SWARM = "1" * 32
PEER_SCRIPT = Path(__file__).with_name("mdns_peer.py")


def _node(letter: str, swarm: str = SWARM, port: int = 7000) -> Announcement:
    return Announcement(letter * 64, swarm, 1, "127.0.0.1", port)


def _txt(announcement: Announcement) -> dict[bytes, bytes | None]:
    return {k.encode(): v.encode() for k, v in announcement_txt(announcement).items()}


def test_txt_round_trip() -> None:
    own = _node("a")
    assert parse_announcement(_txt(own), "127.0.0.1", swarm_id=SWARM, protocol_version=1) == own


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({b"swarm_id": b"2" * 32}, "another swarm"),
        ({b"version": b"7"}, "protocol version 7"),
        ({b"node_id": b"zz"}, "malformed node_id"),
        ({b"node_id": b"a" * 300}, "300 bytes long"),
        ({b"port": b"99999"}, "out of range"),
        ({b"port": b"-1"}, "malformed version or port"),
        ({b"port": None}, "missing port"),
        ({b"swarm_id": b"\xff" * 32}, "not ASCII"),
    ],
)
def test_foreign_or_malformed_announcements_are_ignored(
    change: dict[bytes, bytes | None], reason: str
) -> None:
    properties = {**_txt(_node("a")), **change}
    result = parse_announcement(properties, "h", swarm_id=SWARM, protocol_version=1)
    assert isinstance(result, str)
    assert reason in result


async def test_in_memory_hub_reports_joins_and_leaves_within_a_swarm() -> None:
    hub = DiscoveryHub()
    a_in, a_events = unbounded_channel()
    async with trio.open_nursery() as nursery:
        await nursery.start(InMemoryDiscovery(hub, _node("a")).run, a_in)
        b_scope = trio.CancelScope()

        async def run_b() -> None:
            with b_scope:
                b_in, _ = unbounded_channel()
                await InMemoryDiscovery(hub, _node("b")).run(
                    b_in, task_status=trio.TASK_STATUS_IGNORED
                )

        nursery.start_soon(run_b)
        c_in, _ = unbounded_channel()
        await nursery.start(InMemoryDiscovery(hub, _node("c", swarm="2" * 32)).run, c_in)
        await trio.testing.wait_all_tasks_blocked()
        assert a_events.receive_nowait() == Joined(_node("b"))
        b_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        events = []
        while True:
            try:
                events.append(a_events.receive_nowait())
            except trio.WouldBlock:
                break
        assert Left("b" * 64, ("127.0.0.1", 7000)) in events  # that announcement, at its address
        assert not any(isinstance(e, Joined) and e.peer.swarm_id != SWARM for e in events)
        nursery.cancel_scope.cancel()


async def test_seeds_are_retried_with_backoff_until_they_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[float] = []

    async def probe(host: str, port: int) -> Announcement:
        attempts.append(trio.current_time())
        if len(attempts) < 4:
            raise OSError(f"{host}:{port}: connection refused")
        return _node("s", port=port)

    events_in, events = unbounded_channel()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            SeedDiscovery([("10.0.0.9", 7100)], probe, base_delay=1.0).run, events_in
        )
        assert await events.receive() == Joined(_node("s", port=7100))
        nursery.cancel_scope.cancel()
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(attempts)]
    assert gaps == [1.0, 2.0, 4.0]


class PeerProcess:
    """One discovery-only node in its own process (tests/mdns_peer.py)."""

    def __init__(self, service_type: str, node: Announcement) -> None:
        self.node = node
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(PEER_SCRIPT),
                service_type,
                node.node_id,
                node.swarm_id,
                str(node.port),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    async def next_event(self, timeout: float) -> dict[str, str]:
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            line = await trio.to_thread.run_sync(
                self.process.stdout.readline, abandon_on_cancel=True
            )
        assert line, f"peer {self.node.node_id[:4]} exited"
        event: dict[str, str] = json.loads(line)
        return event

    async def events_until(self, wanted: dict[str, str], timeout: float) -> list[dict[str, str]]:
        seen = []
        with trio.fail_after(timeout):
            while True:
                event = await self.next_event(timeout)
                seen.append(event)
                if all(event.get(k) == v for k, v in wanted.items()):
                    return seen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)


async def test_separate_processes_find_each_other_over_mdns_and_see_a_leave() -> None:
    service_type = f"_gfl-{secrets.token_hex(4)}._tcp.local."
    a, b, other = (
        _node("a", port=7001),
        _node("b", port=7002),
        _node("c", swarm="2" * 32, port=7003),
    )
    peers = [PeerProcess(service_type, node) for node in (a, b, other)]
    try:
        for peer in peers:
            assert (await peer.next_event(20))["event"] == "ready"
        seen_by_a = await peers[0].events_until({"event": "joined", "node_id": b.node_id}, 15)
        await peers[1].events_until({"event": "joined", "node_id": a.node_id}, 15)
        peers[1].stop()
        seen_by_a += await peers[0].events_until({"event": "left", "node_id": b.node_id}, 10)
        assert all(event.get("node_id") != other.node_id for event in seen_by_a)
        assert {"event": "joined", "node_id": b.node_id, "port": 7002} in seen_by_a
    finally:
        for peer in peers:
            peer.stop()


# -- addresses: what a node announces, which announced address a peer dials ----------

LAN = IPv4Interface("192.168.1.20/24")
BRIDGE = IPv4Interface("172.17.0.1/16")  # a container bridge: same address on many hosts
LOOPBACK = IPv4Interface("127.0.0.1/8")


@pytest.mark.parametrize(
    ("listen", "advertise", "mdns_interfaces", "expected"),
    [
        # The default config: every interface, mDNS on all of them.  Announcing
        # 127.0.0.1 here made every peer on another host dial its own loopback.
        ("0.0.0.0", "", [], ("192.168.1.20", "172.17.0.1")),
        ("0.0.0.0", "", ["192.168.1.20"], ("192.168.1.20",)),
        ("0.0.0.0", "203.0.113.7", [], ("203.0.113.7",)),  # behind NAT: the operator says
        ("10.0.0.5", "", [], ("10.0.0.5",)),  # bound to one address
        ("127.0.0.1", "", ["127.0.0.1"], ("127.0.0.1",)),  # a single-host swarm
    ],
)
def test_a_node_announces_addresses_its_peers_can_reach(
    listen: str, advertise: str, mdns_interfaces: list[str], expected: tuple[str, ...]
) -> None:
    local = [LOOPBACK, LAN, BRIDGE]
    assert announced_hosts(listen, advertise, mdns_interfaces, local) == expected
    if listen == "0.0.0.0" and not advertise and not mdns_interfaces:
        assert "127.0.0.1" not in announced_hosts(listen, advertise, mdns_interfaces, local)


def test_a_host_with_only_loopback_announces_loopback() -> None:
    assert announced_hosts("0.0.0.0", "", [], [LOOPBACK]) == ("127.0.0.1",)


@pytest.mark.parametrize(
    ("listen", "advertise", "mdns_interfaces", "seeds", "complaint"),
    [
        ("10.0.0.5", "", [], [], "listen host 10.0.0.5 is not an address of this host"),
        ("0.0.0.0", "", ["10.0.0.5"], [], "interfaces: 10.0.0.5 is not an address"),
        ("127.0.0.1", "192.168.1.20", [], [], "takes connections from this host only"),
        # Seeds on another host, yet peers would be told to dial loopback.
        ("127.0.0.1", "", [], ["192.168.1.31"], "seeds are on other hosts (192.168.1.31)"),
        ("0.0.0.0", "127.0.0.1", [], ["seed.lan"], "set [node] advertise_host"),
    ],
)
def test_a_node_refuses_to_start_with_an_address_its_peers_cannot_reach(
    listen: str, advertise: str, mdns_interfaces: list[str], seeds: list[str], complaint: str
) -> None:
    problem = unusable_address(listen, advertise, mdns_interfaces, seeds, [LOOPBACK, LAN, BRIDGE])
    assert problem is not None
    assert complaint in problem


@pytest.mark.parametrize(
    ("listen", "advertise", "mdns_interfaces", "seeds"),
    [
        ("0.0.0.0", "", [], ["192.168.1.31"]),  # the default, across hosts
        ("0.0.0.0", "203.0.113.7", [], ["192.168.1.31"]),  # NAT: not our address, and fine
        ("192.168.1.20", "", ["192.168.1.20"], []),
        ("127.0.0.1", "", ["127.0.0.1"], ["127.0.0.1"]),  # a swarm on one host
        ("127.0.0.1", "", [], ["192.168.1.20"]),  # its seed is on this host too
    ],
)
def test_addresses_that_work_are_accepted(
    listen: str, advertise: str, mdns_interfaces: list[str], seeds: list[str]
) -> None:
    assert (
        unusable_address(listen, advertise, mdns_interfaces, seeds, [LOOPBACK, LAN, BRIDGE]) is None
    )


@pytest.mark.parametrize(
    ("announced", "expected"),
    [
        (["172.17.0.1", "192.168.1.31"], "192.168.1.31"),  # our network, not the bridge
        (["10.9.9.9", "192.168.1.31"], "192.168.1.31"),
        (["10.9.9.9"], "10.9.9.9"),  # routed: the only choice
        (["192.168.1.20"], "192.168.1.20"),  # a peer on this very host
        (["127.0.0.1"], "127.0.0.1"),  # a peer on this host, bound to loopback
        (["127.0.0.1", "10.9.9.9"], "10.9.9.9"),
        (["not an address"], None),
        ([], None),
    ],
)
def test_a_peer_is_dialled_on_the_announced_address_it_shares_a_network_with(
    announced: list[str], expected: str | None
) -> None:
    assert choose_address(announced, [LOOPBACK, LAN, BRIDGE]) == expected


def test_mdns_registers_every_announced_address() -> None:
    own = Announcement("a" * 64, SWARM, 1, "192.168.1.20", 7000)
    discovery = MdnsDiscovery(own, hosts=("192.168.1.20", "10.8.0.2"), local=[LAN])
    info = discovery.service_info()
    assert info.parsed_addresses() == ["192.168.1.20", "10.8.0.2"]
    assert info.port == 7000
