"""Per-peer fairness of the one exchange slot and of model pulls.  Pure."""

from __future__ import annotations

from gossipfl.node.fairness import Fairness
from tests.clock import ManualClock


def test_a_peer_that_never_commits_waits_out_a_penalty() -> None:
    clock = ManualClock()
    fair = Fairness(clock, penalty_s=30.0)
    fair.started("staller")
    clock.now = 2.0
    fair.ended("staller", committed=False, stalled=True)
    assert not fair.may_exchange("staller")
    assert fair.may_exchange("honest")
    clock.now = 32.0
    assert fair.may_exchange("staller")
    assert fair.refused_exchanges == 1


def test_a_peer_that_hangs_up_without_committing_is_not_barred() -> None:
    """Defect: a host whose cable was pulled had its stale requests
    delivered when the link came back, each followed by the close; every
    partner barred it for 30 s."""
    clock = ManualClock()
    fair = Fairness(clock, penalty_s=30.0)
    fair.started("back")
    fair.ended("back", committed=False, stalled=False)
    assert fair.may_exchange("back")


def test_no_back_to_back_slot_while_others_wait() -> None:
    clock = ManualClock()
    fair = Fairness(clock, gap_s=0.5)
    fair.started("a")
    fair.busy_for("b")  # b asked while a held the slot
    fair.ended("a", committed=True)
    assert not fair.may_exchange("a")
    assert fair.may_exchange("b")
    clock.now = 0.5
    assert fair.may_exchange("a")
    fair.started("a")  # nobody waited this time: a may go again at once
    fair.ended("a", committed=True)
    assert fair.may_exchange("a")


def test_model_pulls_are_limited_per_peer_and_in_all() -> None:
    clock = ManualClock()
    fair = Fairness(clock, pull_interval_s=60.0, pulls_per_interval=3)
    assert fair.may_pull("joiner")
    assert not fair.may_pull("joiner")  # the same peer again: not within a minute
    assert fair.may_pull("b")
    assert fair.may_pull("c")
    assert not fair.may_pull("d")  # three in the last minute, from anyone
    clock.now = 60.0
    assert fair.may_pull("d")
    assert fair.may_pull("joiner")
    assert fair.refused_pulls == 2
