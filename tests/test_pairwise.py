"""Properties of the pairwise exchange (DESIGN.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gossipfl.compress import (
    Compressor,
    Dense,
    SharedSeedRandomK,
    TopKWithFeedback,
    ValueDtype,
    merge,
    outgoing_values,
    record_training,
)
from gossipfl.compress.codec import IndexArray

COMPRESSORS: list[Compressor] = [TopKWithFeedback(), SharedSeedRandomK(), Dense()]
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
Vector = npt.NDArray[np.float32]


@dataclass
class Case:
    x_i: Vector
    x_j: Vector
    e_i: Vector
    e_j: Vector
    trained: Vector  # what the responder's training adds between reply and merge
    k: int
    compressor: Compressor
    dtype: ValueDtype
    seed: int


@st.composite
def pairs(draw: st.DrawFn) -> Case:
    dim = draw(st.integers(1, 64))
    vector = hnp.arrays(np.float32, dim, elements=finite)
    return Case(
        x_i=draw(vector), x_j=draw(vector), e_i=draw(vector), e_j=draw(vector),
        trained=draw(vector), k=draw(st.integers(1, dim)),
        compressor=draw(st.sampled_from(COMPRESSORS)),
        dtype=draw(st.sampled_from(["float32", "float16"])),
        seed=draw(st.integers(0, 2**32)),
    )  # fmt: skip


def _exchange(case: Case, train_between: bool) -> tuple[Vector, Vector, Vector, Vector, IndexArray]:
    x_i, x_j, e_i, e_j = case.x_i.copy(), case.x_j.copy(), case.e_i.copy(), case.e_j.copy()
    selection = case.compressor.select(e_i, case.k, np.random.default_rng(case.seed))
    indices = case.compressor.resolve(selection.wire, x_i.size, x_i.size)
    sent_i = outgoing_values(x_i, selection.indices, case.dtype)
    sent_j = outgoing_values(x_j, indices, case.dtype)
    if train_between:  # the responder trains after replying, before merging
        before = x_j.copy()
        x_j += case.trained
        record_training(e_j, before, x_j)
    merge(x_j, e_j, indices, sent_j, sent_i)
    merge(x_i, e_i, selection.indices, sent_i, sent_j)
    return x_i, x_j, e_i, e_j, selection.indices


def _close(a: npt.ArrayLike, b: npt.ArrayLike) -> bool:
    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-3))


@given(pairs(), st.booleans())
def test_exchange_preserves_the_sum_of_the_two_models(case: Case, train_between: bool) -> None:
    x_i, x_j, *_ = _exchange(case, train_between)
    expected = case.x_i + case.x_j + (case.trained if train_between else 0)
    assert _close(x_i + x_j, expected)


@given(pairs())
def test_identical_models_stay_identical(case: Case) -> None:
    case.x_j = case.x_i
    x_i, x_j, *_ = _exchange(case, train_between=False)
    assert np.array_equal(x_i, case.x_i)
    assert np.array_equal(x_j, case.x_i)


@given(pairs(), st.booleans())
def test_merged_coordinates_have_zero_residual(case: Case, train_between: bool) -> None:
    _, _, e_i, e_j, indices = _exchange(case, train_between)
    assert not e_i[indices].any()
    assert not e_j[indices].any()
    untouched = np.setdiff1d(np.arange(e_i.size), indices)
    assert np.array_equal(e_i[untouched], case.e_i[untouched])


@given(pairs())
def test_float32_exchange_without_training_is_the_average(case: Case) -> None:
    case.dtype = "float32"
    x_i, x_j, _, _, indices = _exchange(case, train_between=False)
    average = (case.x_i[indices] + case.x_j[indices]) / 2
    assert _close(x_i[indices], average)
    assert _close(x_j[indices], average)


def test_topk_chooses_what_changed_most_since_the_last_exchange() -> None:
    params = np.zeros(6, dtype=np.float32)
    residual = np.zeros(6, dtype=np.float32)
    record_training(residual, params, np.array([0, 5, 0, -7, 1, 0], dtype=np.float32))
    selection = TopKWithFeedback().select(residual, 2, np.random.default_rng(0))
    assert selection.indices.tolist() == [1, 3]
