"""Refused handshakes are logged once per address per interval, with a
count: an outsider cannot flood the log."""

from __future__ import annotations

import structlog.testing

from gossipfl.transport.refusals import MAX_TRACKED, RefusalLog
from tests.clock import ManualClock


def test_a_flood_from_one_address_is_one_line_a_minute_with_its_count() -> None:
    clock = ManualClock()
    refusals = RefusalLog(clock, interval_s=60.0)
    with structlog.testing.capture_logs() as logs:
        for i in range(400):
            clock.now = i * 0.1
            refusals.refused(f"10.0.0.9:{40000 + i}", "no certificate")
        refusals.refused("10.0.0.7:5000", "no certificate")  # another address: its own line
        clock.now = 61.0
        refusals.refused("10.0.0.9:1", "no certificate")
    lines = [(e["peer"], e.get("and_since_last_line")) for e in logs]
    assert lines == [("10.0.0.9:40000", None), ("10.0.0.7:5000", None), ("10.0.0.9:1", 399)]
    assert all(e["event"] == "handshake_refused" and e["reason"] == "no certificate" for e in logs)
    assert refusals.total == 402


def test_the_addresses_remembered_are_bounded() -> None:
    clock = ManualClock()
    refusals = RefusalLog(clock)
    with structlog.testing.capture_logs():
        for i in range(MAX_TRACKED + 500):
            refusals.refused(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:1", "x")
    assert refusals.tracked == MAX_TRACKED
