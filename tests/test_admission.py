"""Caps on what anyone who can reach the port may cost a node.  Pure."""

from __future__ import annotations

from gossipfl.transport.admission import Admission
from tests.clock import ManualClock


def test_handshakes_from_one_address_are_rate_limited_with_a_burst() -> None:
    clock = ManualClock()
    gate = Admission(clock, per_address_rate=10.0, per_address_burst=5.0)
    assert [gate.admit("10.6.6.6") for _ in range(5)] == [None] * 5
    assert gate.admit("10.6.6.6") == "more than 10 handshakes a second from 10.6.6.6"
    assert gate.admit("10.0.0.2") is None  # another address has its own budget
    clock.now = 0.1  # one more token
    assert gate.admit("10.6.6.6") is None
    assert gate.admit("10.6.6.6") is not None
    assert sum(gate.refused.values()) == 2


def test_connections_and_handshakes_in_progress_are_capped() -> None:
    clock = ManualClock()
    gate = Admission(clock, max_connections=3, max_handshakes=2)
    assert gate.admit("a") is None
    gate.handshakes = 2  # two handshakes under way
    assert gate.admit("b") == "2 handshakes in progress already"
    gate.handshakes = 0
    assert gate.admit("b") is None
    assert gate.admit("c") is None
    assert gate.admit("d") == "3 connections open already"
    gate.closed()
    assert gate.admit("d") is None
