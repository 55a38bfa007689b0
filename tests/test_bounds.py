"""Value bounds and non-finite updates: what a peer's values or a training
step may do to the model.  Pure, no IO."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossipfl.node.bounds import ValueBound
from gossipfl.node.model import ModelState, NonFiniteError

BOUND = ValueBound(ratio=10.0, floor=1.0)


@given(st.integers(0, 2**32), st.floats(0.01, 100.0), st.floats(0.2, 5.0))
def test_an_honest_peers_values_pass(seed: int, scale: float, spread: float) -> None:
    """Two nodes of one swarm: models of the same scale, values at the same
    coordinates differing by up to ``spread`` x that scale."""
    rng = np.random.default_rng(seed)
    model = (rng.standard_normal(500) * scale).astype(np.float32)
    at = np.sort(rng.choice(500, 50, replace=False))
    theirs = model[at] + (rng.uniform(-1, 1, 50) * spread * scale).astype(np.float32)
    assert BOUND.violation(theirs, model[at], model) is None


def test_a_fresh_model_near_zero_still_takes_first_updates() -> None:
    model = np.full(100, 1e-3, np.float32)
    assert BOUND.violation(np.full(10, 2.0, np.float32), model[:10], model) is None


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.full(10, 1e30, np.float32), "magnitude 1e\\+30 is beyond 10x our model's largest"),
        (np.full(10, -41.0, np.float32), "magnitude 41 is beyond 10x our model's largest \\(4"),
        # each value within 10x our largest (4), but all of them far above
        # ours at those coordinates (0.5 each, raised to the floor of 1)
        (np.full(10, 39.0, np.float32), "norm 123 is beyond 10x ours at the same 10 coordinates"),
    ],
)
def test_values_beyond_the_bound_are_named(values: np.ndarray, reason: str) -> None:
    model = np.full(100, 0.5, np.float32)
    model[-1] = -4.0
    violation = BOUND.violation(values, model[:10], model)
    assert violation is not None
    assert re.search(reason, violation), violation


def test_a_bound_below_one_x_is_refused() -> None:
    with pytest.raises(ValueError, match="ratio >= 1"):
        ValueBound(ratio=0.5)


def _model() -> ModelState:
    model = ModelState.initial(np.linspace(-1, 1, 20, dtype=np.float32))
    model.residual[:] = 0.25
    return model


def test_a_merge_that_would_overflow_is_rolled_back() -> None:
    model = _model()
    model.params[3] = 3e38
    params, residual = model.params.copy(), model.residual.copy()
    sent = model.outgoing(np.array([2, 3]), "float32")
    with pytest.raises(NonFiniteError):
        model.merge(sent, np.array([0.0, -3e38], np.float32))  # delta 3e38 on top of 3e38
    assert np.array_equal(model.params, params)
    assert np.array_equal(model.residual, residual)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_training_step_that_diverged_is_not_applied(bad: float) -> None:
    model = _model()
    params, residual = model.params.copy(), model.residual.copy()
    after = params + 0.1
    after[7] = bad
    with pytest.raises(NonFiniteError, match="training produced non-finite"):
        model.trained(params.copy(), after)
    assert np.array_equal(model.params, params)
    assert np.array_equal(model.residual, residual)
    model.trained(params.copy(), params + 0.1)  # a good one still lands
    np.testing.assert_allclose(model.params, params + 0.1)
