"""The time a node may lose to peers only an announcement vouches for.  Pure."""

from __future__ import annotations

import pytest

from gossipfl.node.unproven import UnprovenBudget
from tests.clock import ManualClock


def test_a_dial_that_hangs_is_allowed_then_one_per_refill() -> None:
    clock = ManualClock()
    budget = UnprovenBudget(clock, share=0.02, burst_s=2.0)
    assert budget.allowed()
    budget.lost(3.0)  # a black hole held a round for its 3 s deadline
    assert not budget.allowed()
    clock.now = 49.0  # 1 s of debt back to zero takes 50 s at 2%
    assert not budget.allowed()
    clock.now = 50.1
    assert budget.allowed()
    assert budget.lost_s == 3.0


def test_the_debt_is_bounded_so_a_node_is_not_shut_out_for_long() -> None:
    clock = ManualClock()
    budget = UnprovenBudget(clock, share=0.02, burst_s=2.0)
    for _ in range(100):  # nothing but unproven peers to try, none answering
        budget.lost(3.0)
    clock.now = 100.1  # from -2 s back above zero
    assert budget.allowed()
    assert budget.lost_s == 300.0


def test_it_refills_only_up_to_its_burst() -> None:
    clock = ManualClock()
    budget = UnprovenBudget(clock, share=0.5, burst_s=2.0)
    clock.now = 1000.0
    budget.lost(2.5)
    assert not budget.allowed()


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="share"):
        UnprovenBudget(ManualClock(), share=1.0)
