"""Peer exchange: the peer sample every hello carries, the bounded table it
feeds, and a swarm started from one seed with no multicast forming a
mesh (in process, virtual time)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import structlog.testing
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from gossipfl.compress import encode_indices, encode_values
from gossipfl.protocol import Exchange, ExchangeCommit, ExchangeReply
from gossipfl.topology.discovery import DiscoveryHub, SeedDiscovery
from gossipfl.topology.peer_sample import (
    SAMPLE_SIZE,
    SampleError,
    SharedPeer,
    decode_sample,
    encode_sample,
)
from gossipfl.topology.peers import PeerTable
from gossipfl.transport import MemoryWire, NodeIdentity
from tests.inprocess import Member, make_node, running

_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
_hosts = st.tuples(*[st.integers(1, 223)] + [st.integers(0, 255)] * 3).map(
    lambda parts: ".".join(map(str, parts))
)
_peers = st.builds(SharedPeer, _ids, _hosts, st.integers(1, 65535))


@given(st.lists(_peers, max_size=SAMPLE_SIZE))
def test_a_sample_survives_the_wire(peers: list[SharedPeer]) -> None:
    assert decode_sample(encode_sample(peers)) == peers


def test_a_sample_holds_at_most_sample_size_peers_and_only_ipv4_ones() -> None:
    peers = [SharedPeer(f"{i:064x}", "10.0.0.1", 7000 + i) for i in range(SAMPLE_SIZE + 5)]
    assert decode_sample(encode_sample(peers)) == peers[:SAMPLE_SIZE]
    assert encode_sample([SharedPeer("ab" * 32, "node5", 7000)]) == b""  # simnet's names


def _record(host: bytes, port: int) -> bytes:
    return struct.pack("!32s4sH", b"\x01" * 32, host, port)


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"\x00" * 37, "37 bytes is not a whole number of 38-byte peers"),
        (_record(bytes([10, 0, 0, 1]), 7000) * (SAMPLE_SIZE + 1), "more than 16"),
        (_record(bytes([0, 0, 0, 0]), 7000), "0.0.0.0:7000 is not an address"),
        (_record(bytes([224, 0, 0, 251]), 5353), "224.0.0.251:5353 is not an address"),
        (_record(bytes([255, 255, 255, 255]), 7000), "255.255.255.255:7000 is not"),
        (_record(bytes([10, 0, 0, 1]), 0), "10.0.0.1:0 is not an address"),
    ],
)
def test_a_sample_that_is_not_one_is_refused_with_a_reason(blob: bytes, reason: str) -> None:
    with pytest.raises(SampleError, match=reason):
        decode_sample(blob)


def _proven(table: PeerTable, node_id: str, host: str, port: int, now: float = 0.0) -> None:
    table.announced(node_id, host, port, "s", 1, now=now)
    table.connected(node_id, True)


def test_only_live_proven_peers_are_shared() -> None:
    table = PeerTable("self")
    _proven(table, "a" * 64, "10.0.0.2", 7000)
    _proven(table, "b" * 64, "10.0.0.3", 7000)
    table.announced("c" * 64, "10.0.0.4", 7000, "s", 1, now=0)  # only announced
    _proven(table, "d" * 64, "10.0.0.5", 7000)
    table.failed("d" * 64, now=1.0)  # not answering now
    shared = table.shareable(np.random.default_rng(0))
    assert sorted(p.node_id[0] for p in shared) == ["a", "b"]


def test_learned_peers_are_unproven_and_known_ones_keep_their_address() -> None:
    table = PeerTable("self")
    _proven(table, "a" * 64, "10.0.0.2", 7000)
    told = [
        SharedPeer("a" * 64, "10.6.6.6", 1),  # a lie about a peer we proved
        SharedPeer("b" * 64, "10.0.0.3", 7000),
        SharedPeer("self", "10.0.0.9", 7000),  # ourselves
    ]
    assert table.learned(told, "s", 1, now=1.0, round_=0) == 1
    a, b = table.get("a" * 64), table.get("b" * 64)
    assert a is not None
    assert b is not None
    assert (a.host, a.port, a.verified) == ("10.0.0.2", 7000, True)
    assert (b.host, b.verified) == ("10.0.0.3", False)
    assert "self" not in table


def test_a_full_table_makes_room_with_the_peers_it_can_best_spare() -> None:
    """Those that left first, then never-proven ones (least recently heard
    of first), then failing proven ones; never a live proven peer."""
    table = PeerTable("self", max_peers=8)
    for i in range(5):
        _proven(table, f"proven{i}", "10.0.0.2", 7000 + i)
    table.announced("left", "10.0.0.3", 7000, "s", 1, now=0)
    table.gone("left")
    table.announced("heard-at-0", "10.0.0.4", 7000, "s", 1, now=0)
    table.announced("heard-at-5", "10.0.0.5", 7000, "s", 1, now=5)
    for i, displaced in enumerate(("left", "heard-at-0", "heard-at-5")):
        assert table.announced(f"new{i}", "10.0.0.9", 7000 + i, "s", 1, now=10) is not None
        assert displaced not in table
        table.connected(f"new{i}", True)  # proven
    assert len(table) == 8
    table.failed("proven1", now=11.0)
    assert table.announced("late", "10.0.0.9", 99, "s", 1, now=12) is not None
    assert "proven1" not in table
    table.connected("late", True)
    assert table.announced("later", "10.0.0.9", 100, "s", 1, now=13) is None  # all live, proven
    assert len(table) == 8


async def test_a_swarm_started_from_one_seed_without_multicast_forms_a_mesh(
    members: list[NodeIdentity], autojump_clock: trio.testing.MockClock
) -> None:
    """Each node is given only the seed's address; the seed knows the
    others only because they dialled it, and they each other only through
    peer exchange."""
    wire, lonely = MemoryWire(), DiscoveryHub()
    hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    nodes = [make_node(members[i], wire, lonely, name=host) for i, host in enumerate(hosts)]
    seed = nodes[0]
    for node in nodes[1:]:
        probe = node.probe
        node.discovery = lambda own, probe=probe: SeedDiscovery([(hosts[0], 7000)], probe)
    seed.discovery = None
    async with running(*nodes):
        await trio.sleep(60)
    b, c = nodes[1], nodes[2]
    for node, other in ((b, c), (c, b)):
        peer = node.table.get(other.identity.node_id)
        assert peer is not None, "never learned of the other non-seed node"
        assert peer.exchanges > 10
    # one of them dialled the other at the address the seed shared, which
    # proved it (the other learned the dialler from that connection)
    entries = [n.table.get(o.identity.node_id) for n, o in ((b, c), (c, b))]
    assert any(p is not None and p.verified for p in entries)


async def test_a_member_sending_a_bad_sample_still_exchanges_and_is_named_in_the_log(
    members: list[NodeIdentity], autojump_clock: trio.testing.MockClock
) -> None:
    wire, hub = MemoryWire(), DiscoveryHub()
    node = make_node(members[0], wire, hub, name="10.0.0.1")
    member = Member(members[1], wire, hub)
    with structlog.testing.capture_logs() as logs:
        async with running(node):
            channel = await member.dial(node, greet_with=node)
            indices = np.arange(5, dtype=np.int64)
            values = encode_values(np.zeros(5, dtype=np.float32))
            bad = _record(bytes([0, 0, 0, 0]), 7000)
            await channel.send(Exchange(1, encode_indices(indices, 64), values, bad))
            assert isinstance(await channel.receive(), ExchangeReply)
            await channel.send(ExchangeCommit(1))
            await trio.sleep(1)
    refused = [e for e in logs if e["event"] == "peer_sample_refused"]
    assert len(refused) == 1
    assert refused[0]["peer"] == members[1].node_id[:12]
    assert "0.0.0.0:7000 is not an address" in refused[0]["reason"]
    assert node.counters.responded == 1
    assert len(node.table) == 1  # the member itself (it dialled us), nothing from the sample


async def test_a_node_listed_as_its_own_seed_stops_dialling_itself(
    members: list[NodeIdentity], autojump_clock: trio.testing.MockClock
) -> None:
    """A config shared by a whole swarm lists every seed, the node's own
    address among them: it used to dial itself for ever, two warnings a
    time."""
    wire = MemoryWire()
    node = make_node(members[0], wire, DiscoveryHub(), name="10.0.0.1")
    probe = node.probe
    node.discovery = lambda own: SeedDiscovery([("10.0.0.1", 7000)], probe)
    with structlog.testing.capture_logs() as logs:
        async with running(node):
            await trio.sleep(300)
    events = [e["event"] for e in logs]
    assert events.count("seed_is_self") == 1
    assert "seed_unreachable" not in events
    assert "peer_refused" not in events
