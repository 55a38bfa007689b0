"""The simulation's clock: time stands still while tasks run, jumps to the
next deadline when none can, and a swarm runs exactly as under trio's own
``MockClock``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import trio
import trio.testing

import simnet.swarm
from simnet.clock import EventClock
from simnet.swarm import SwarmSpec, run_swarm


def test_time_jumps_to_each_deadline_and_stands_still_between() -> None:
    seen: list[float] = []

    async def main() -> None:
        async def sleeper(seconds: float) -> None:
            await trio.sleep(seconds)
            seen.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for seconds in (3.0, 0.5, 1e6, 2.0):
                nursery.start_soon(sleeper, seconds)
        for _ in range(100):
            await trio.lowlevel.checkpoint()  # running tasks take no time
        seen.append(trio.current_time())

    trio.run(main, clock=EventClock(start=10.0))
    assert seen == [10.5, 12.0, 13.0, 1e6 + 10.0, 1e6 + 10.0]


def test_a_swarm_runs_exactly_as_under_mock_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SwarmSpec(
        peers=6,
        trainer="digits-logreg",
        gossip={"density": 0.1},
        duration_s=4.0,
        step_cost_s=0.05,
        seed=3,
        tls=False,
    )
    ours = run_swarm(spec)
    monkeypatch.setattr(
        simnet.swarm, "EventClock", lambda: trio.testing.MockClock(autojump_threshold=0)
    )
    theirs = run_swarm(replace(spec))
    assert ours.virtual_time_s == theirs.virtual_time_s == pytest.approx(4.0)
    for a, b in zip(ours.nodes, theirs.nodes, strict=True):
        assert a.counters == b.counters
        assert np.array_equal(a.params, b.params)
    assert sum(n.counters["exchanges"] for n in ours.nodes) > 20
