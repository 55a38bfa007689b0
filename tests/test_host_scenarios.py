"""Reliability on real hosts (simnet/host_scenarios.py): one bed plays
every scenario in turn, and each test asserts one of them on what it
recorded.  Waits have generous deadlines and no time is asserted; a wait
that ran out is recorded as ``None`` and the test that needs it fails
naming it.  ``bench/hosts_reliability.py`` runs the same and prints the
times it measured (docs/reliability.md)."""

from __future__ import annotations

import pytest

from simnet.host_scenarios import CUT, KILLED, LATE, POINTS, Observations, run_scenarios
from tests.test_hosts import bed_test


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observations:
    return run_scenarios(tmp_path_factory.mktemp("scenarios"))


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_one_seed_is_enough_to_learn_the_whole_swarm(observed: Observations) -> None:
    """mDNS off, every node told only host 0's address: through peer
    exchange each host ends up knowing every other at its address, trades
    with several of them, and learns more than alone."""
    plan = observed.plan
    assert observed.everyone_known_s is not None, "the hosts never all knew each other"
    for i in range(plan.hosts):
        others = {nid: observed.addresses[j] for j, nid in enumerate(observed.node_ids) if j != i}
        assert observed.known[i] == others, f"host{i}"
        assert observed.partners[i] >= min(3, plan.hosts - 1), f"host{i}"
        assert observed.gossip[i] > observed.alone[i], f"host{i}"


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_hosts_killed_with_kill_9_restore_their_checkpoint_and_rejoin(
    observed: Observations,
) -> None:
    for i in observed.plan.killed:
        event = observed.event(KILLED, i)
        assert "checkpoint_restored" in event.log_events, f"host{i}: {event}"
        assert event.back_s is not None, f"host{i} never exchanged again: {event}"
        assert event.before is not None
        # Waited for: accuracy not below the one before the kill, less 2 points.
        assert event.caught_up is not None, f"host{i} never got its accuracy back: {event}"
        assert event.caught_up >= event.before - POINTS


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_an_unplugged_host_exchanges_again_and_catches_up(observed: Observations) -> None:
    event = observed.event(CUT, observed.plan.cut)
    assert event.back_s is not None, f"never exchanged again after the heal: {event}"
    assert event.caught_up is not None, f"never came within 2 points of the others: {event}"
    assert event.others is not None
    assert abs(event.caught_up - event.others) <= POINTS


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_a_late_host_pulls_the_model_and_learns_more_than_alone(observed: Observations) -> None:
    i = observed.plan.late
    event = observed.event(LATE, i)
    assert "model_pulled" in event.log_events, event
    assert event.back_s is not None, event
    assert observed.gossip[i] > observed.alone[i]
