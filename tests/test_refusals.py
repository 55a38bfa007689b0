"""Refused handshakes are logged once per address per interval, with a
count: an outsider cannot flood the log."""

from __future__ import annotations

import logging

import structlog.testing

from gossipfl.node.logs import OncePerInterval
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


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_stdlib_line_repeated_every_100_ms_is_one_line_a_minute_with_its_count() -> None:
    """trio's accept loop logs an error every 0.1 s while the node is out of
    file descriptors."""
    clock = ManualClock()
    logger = logging.getLogger("tests.repeating")
    logger.propagate = False
    kept = _Kept()
    logger.addHandler(kept)
    logger.addFilter(OncePerInterval(60.0, clock))
    for i in range(600):
        clock.now = i * 0.1
        logger.error("accept returned %s; retrying in %s seconds", "EMFILE", 0.1)
    logger.error("another message")
    clock.now = 60.0
    logger.error("accept returned %s; retrying in %s seconds", "EMFILE", 0.1)
    assert kept.lines == [
        "accept returned EMFILE; retrying in 0.1 seconds",
        "another message",
        "accept returned EMFILE; retrying in 0.1 seconds"
        " (and 599 more like it since the last line)",
    ]
