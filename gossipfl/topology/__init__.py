"""Peer table, bandwidth estimation, partner selectors and discovery."""

from gossipfl.topology.discovery import (
    Announcement,
    Discovery,
    DiscoveryEvent,
    DiscoveryHub,
    InMemoryDiscovery,
    Joined,
    Left,
    SeedDiscovery,
)
from gossipfl.topology.links import LinkEstimate
from gossipfl.topology.mdns import MdnsDiscovery
from gossipfl.topology.oracle import OracleMatching, bottleneck_matching
from gossipfl.topology.peers import Backoff, Peer, PeerTable
from gossipfl.topology.selectors import BandwidthAware, Selector, Uniform

__all__ = [
    "Announcement",
    "Backoff",
    "BandwidthAware",
    "Discovery",
    "DiscoveryEvent",
    "DiscoveryHub",
    "InMemoryDiscovery",
    "Joined",
    "Left",
    "LinkEstimate",
    "MdnsDiscovery",
    "OracleMatching",
    "Peer",
    "PeerTable",
    "SeedDiscovery",
    "Selector",
    "Uniform",
    "bottleneck_matching",
]
