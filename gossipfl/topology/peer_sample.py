"""Peer exchange: the sample of peers a node tells its partners about.

Without multicast a node knows only its seeds, so every ``hello`` carries a
small sample of the peers its sender has proved (by dialling them and
checking their certificate): node id, IPv4 address and port, 38 bytes
each.  A swarm started from one seed forms a mesh within a few handshakes.

What a partner tells us is a hint, like an mDNS announcement: such a peer
is unproven until our own handshake at that address proves its node id,
and it is budgeted and capped like any unproven peer.  Pure logic: no IO.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final, NamedTuple

SAMPLE_SIZE: Final = 16  # peers per hello, at most
_RECORD: Final = struct.Struct("!32s4sH")  # node id (SHA-256), IPv4, port


class SharedPeer(NamedTuple):
    node_id: str
    host: str
    port: int


class SampleError(ValueError):
    """A peer sample that is not one; the reason names what is wrong."""


def encode_sample(peers: list[SharedPeer]) -> bytes:
    """The wire form of up to :data:`SAMPLE_SIZE` peers (those at an IPv4
    address: simnet's hosts have names)."""
    records = []
    for peer in peers:
        try:
            host = ipaddress.IPv4Address(peer.host).packed
        except ValueError:
            continue
        records.append(_RECORD.pack(bytes.fromhex(peer.node_id), host, peer.port))
    return b"".join(records[:SAMPLE_SIZE])


def decode_sample(blob: bytes) -> list[SharedPeer]:
    """The peers in ``blob``; raises :class:`SampleError` for a blob that is
    too long or cut short, or an address no peer can listen on (the
    unspecified address, multicast, broadcast, reserved ranges, port 0)."""
    if len(blob) % _RECORD.size:
        raise SampleError(f"{len(blob)} bytes is not a whole number of {_RECORD.size}-byte peers")
    if len(blob) > SAMPLE_SIZE * _RECORD.size:
        raise SampleError(f"{len(blob) // _RECORD.size} peers, more than {SAMPLE_SIZE}")
    peers = []
    for raw_id, raw_host, port in _RECORD.iter_unpack(blob):
        host = ipaddress.IPv4Address(raw_host)
        # (reserved: 240.0.0.0/4, the broadcast address among them)
        if host.is_unspecified or host.is_multicast or host.is_reserved or port == 0:
            raise SampleError(f"{host}:{port} is not an address a peer can listen on")
        peers.append(SharedPeer(raw_id.hex(), str(host), port))
    return peers
