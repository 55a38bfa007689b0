"""Compressors choose S and rebuild it from what travels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossipfl.compress import (
    Dense,
    PayloadError,
    SharedSeedRandomK,
    TopKWithFeedback,
    exchange_k,
    top_k_indices,
)
from gossipfl.compress.randk import shared_mask


@given(
    st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=1, max_size=300),
    st.integers(1, 400),
)
def test_top_k_takes_the_largest_magnitudes(values: list[float], k: int) -> None:
    scores = np.array(values, dtype=np.float32)
    chosen = top_k_indices(scores, k)
    k = min(k, scores.size)
    assert chosen.size == k
    assert np.all(np.diff(chosen) > 0)
    left_out = np.setdiff1d(np.arange(scores.size), chosen)
    if left_out.size:
        assert np.abs(scores[chosen]).min() >= np.abs(scores[left_out]).max()


@pytest.mark.parametrize("k", [1, 300, 3000, 40_000])
def test_prefiltered_top_k_is_exact_on_large_vectors(k: int) -> None:
    scores = np.random.default_rng(3).standard_normal(1 << 19).astype(np.float32)
    chosen = top_k_indices(scores, k)
    expected = np.sort(np.argsort(-np.abs(scores), kind="stable")[:k])
    assert np.array_equal(chosen, expected)


def test_topk_wire_resolves_to_the_same_set() -> None:
    residual = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    selection = TopKWithFeedback().select(residual, 50, np.random.default_rng(0))
    assert np.array_equal(TopKWithFeedback().resolve(selection.wire, 5000, 5000), selection.indices)


def test_randk_ships_only_a_seed_and_both_sides_agree() -> None:
    compressor = SharedSeedRandomK()
    selection = compressor.select(
        np.zeros(100_000, dtype=np.float32), 1000, np.random.default_rng(5)
    )
    assert len(selection.wire) == 12
    assert selection.indices.size == 1000
    assert np.array_equal(compressor.resolve(selection.wire, 100_000, 100_000), selection.indices)
    again = compressor.select(np.zeros(100_000, dtype=np.float32), 1000, np.random.default_rng(6))
    assert not np.array_equal(again.indices, selection.indices)


def test_randk_refuses_bad_descriptors() -> None:
    compressor = SharedSeedRandomK()
    with pytest.raises(PayloadError, match="12"):
        compressor.resolve(b"\x00" * 5, 100, 100)
    with pytest.raises(PayloadError, match="outside 1..100"):
        compressor.resolve(
            np.array([7], "<u8").tobytes() + np.array([101], "<u4").tobytes(), 100, 1000
        )
    assert shared_mask(7, 100, 100).size == 100


def test_dense_is_everything_and_carries_no_indices() -> None:
    selection = Dense().select(np.zeros(10, dtype=np.float32), 3, np.random.default_rng(0))
    assert selection.wire == b""
    assert np.array_equal(selection.indices, np.arange(10))
    with pytest.raises(PayloadError, match="no index bytes"):
        Dense().resolve(b"x", 10, 10)
    with pytest.raises(PayloadError, match="exceeds the limit"):
        Dense().resolve(b"", 10, 5)


def test_exchange_k_follows_density_then_the_link_budget() -> None:
    topk = TopKWithFeedback()
    assert exchange_k(topk, 1_000_000, 0.01, 4) == 10_000
    # 1 MB/s for 10 ms is 10 kB: about 2000 entries of 4 + ~1 bytes.
    k = exchange_k(topk, 1_000_000, 0.01, 4, bandwidth_bps=1e6, budget_s=0.01)
    assert 1000 < k < 2500
    assert topk.index_bytes(1_000_000, k) + 4 * k <= 10_000
    assert exchange_k(topk, 1000, 0.01, 4, bandwidth_bps=1.0, budget_s=0.001) == 1
    with pytest.raises(ValueError, match="density"):
        exchange_k(topk, 10, 0.0, 4)
