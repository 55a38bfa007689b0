"""The sparse payload codec: round-trips, size, and hostile bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossipfl.compress import (
    PayloadError,
    SparseSlice,
    decode_indices,
    decode_slice,
    decode_values,
    encode_indices,
    encode_slice,
    encode_values,
    log2_binomial,
    quantize,
)
from gossipfl.compress.codec import BITMAP, GAPS, leb128_decode, leb128_encode


@st.composite
def index_sets(draw: st.DrawFn, max_dim: int = 5000) -> tuple[int, np.ndarray]:
    dim = draw(st.integers(1, max_dim))
    chosen = draw(st.sets(st.integers(0, dim - 1), max_size=min(dim, 400)))
    return dim, np.array(sorted(chosen), dtype=np.int64)


@given(index_sets())
def test_indices_round_trip(case: tuple[int, np.ndarray]) -> None:
    dim, indices = case
    assert np.array_equal(decode_indices(encode_indices(indices, dim), dim), indices)


@given(st.lists(st.integers(0, 2**63 - 1), max_size=50))
def test_leb128_round_trip(values: list[int]) -> None:
    array = np.array(values, dtype=np.uint64)
    encoded = np.frombuffer(leb128_encode(array), dtype=np.uint8)
    assert np.array_equal(leb128_decode(encoded, len(values), 10), array)


@given(
    st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), max_size=200),
    st.sampled_from(["float32", "float16"]),
)
def test_values_round_trip(values: list[float], dtype: str) -> None:
    array = np.array(values, dtype=np.float32)
    decoded = decode_values(encode_values(array, dtype), array.size, dtype)  # type: ignore[arg-type]
    assert decoded.dtype == np.float32
    assert np.array_equal(decoded, quantize(array, dtype))  # type: ignore[arg-type]
    if dtype == "float32":
        assert np.array_equal(decoded, array)


@given(index_sets(), st.sampled_from(["float32", "float16"]))
def test_slice_round_trip(case: tuple[int, np.ndarray], dtype: str) -> None:
    dim, indices = case
    values = quantize(np.linspace(-3, 3, indices.size, dtype=np.float32), dtype)  # type: ignore[arg-type]
    piece = SparseSlice(dim, indices, values)
    blobs = encode_slice(piece, dtype)  # type: ignore[arg-type]
    assert decode_slice(*blobs, dim=dim, dtype=dtype) == piece  # type: ignore[arg-type]


@pytest.mark.parametrize("density", [0.01, 0.001])
def test_index_bytes_within_entropy_bound(density: float) -> None:
    dim = 1_000_000
    k = int(dim * density)
    indices = np.sort(np.random.default_rng(7).choice(dim, k, replace=False)).astype(np.int64)
    blob = encode_indices(indices, dim)
    assert blob[0] == GAPS
    assert len(blob) <= 1.3 * log2_binomial(dim, k) / 8


def test_dense_sets_use_the_bitmap() -> None:
    dim = 10_000
    indices = np.arange(0, dim, 4, dtype=np.int64)  # 25% density
    blob = encode_indices(indices, dim)
    assert blob[0] == BITMAP
    assert len(blob) <= dim // 8 + 4


def test_encoder_refuses_local_misuse_with_value_error() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        encode_indices(np.array([3, 2], dtype=np.int64), 10)
    with pytest.raises(ValueError, match="strictly increasing"):
        encode_indices(np.array([10], dtype=np.int64), 10)
    with pytest.raises(ValueError, match="not finite"):
        encode_values(np.array([1e6], dtype=np.float32), "float16")


# -- hostile bytes ----------------------------------------------------------------


def _gaps_blob(count: int, bits: int, body: bytes) -> bytes:
    return bytes([GAPS]) + leb128_encode(np.array([count], dtype=np.uint64)) + bytes([bits]) + body


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "empty"),
        (b"\x07\x00", "unknown index form"),
        (b"\x00", "truncated index count"),
        (b"\x00\xff\xff\xff\xff\x0f", "exceeds the limit"),  # 4G entries declared, no body
        (b"\x00\x80\x80\x80\x80\x80\x01", "too large"),
        (_gaps_blob(2, 0, b"\x01"), "expected 2 varints, found 1"),
        (_gaps_blob(1, 0, b"\x81"), "expected 1 varints, found 0"),
        (_gaps_blob(1, 0, b"\x01\x01"), "expected 1 varints, found 2"),
        (_gaps_blob(1, 0, b"\x81\x00"), "longer than 1 bytes"),  # dim 100: one byte
        (_gaps_blob(2, 0, b"\x50\x50"), "out of range"),  # 80 + 1 + 80 >= 100
        (_gaps_blob(1, 40, b"\x00"), "low bits"),
        (_gaps_blob(3, 4, b"\x00"), "shorter than its packed low bits"),
        (_gaps_blob(1, 4, b"\x00\x01"), "padding"),
        (bytes([BITMAP, 1]) + b"\x00" * 12, "bitmap of 12 bytes"),
        (bytes([BITMAP, 1]) + b"\x00" * 12 + b"\x10", "beyond the model dimension"),
        (bytes([BITMAP, 2]) + b"\x01" + b"\x00" * 12, "declares 2"),
    ],
)
def test_malformed_index_blobs_are_refused_with_a_reason(blob: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_indices(blob, 100)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x81\x00", "non-canonical"),
        (b"\xe4\x00", "non-canonical"),
        (b"\x80\x80\x04", "longer than 2"),
    ],
)
def test_varints_must_be_canonical_and_short(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_indices(_gaps_blob(1, 0, body), 1000)


def test_max_count_bounds_the_declared_count() -> None:
    blob = encode_indices(np.arange(50, dtype=np.int64), 100)
    with pytest.raises(PayloadError, match="exceeds the limit 10"):
        decode_indices(blob, 100, max_count=10)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    blob = np.array([1.0, bad], dtype="<f4").tobytes()
    with pytest.raises(PayloadError, match="NaN or Inf"):
        decode_values(blob, 2)


def test_value_length_must_match_the_index_count() -> None:
    with pytest.raises(PayloadError, match="expected 3 x 4"):
        decode_values(b"\x00" * 8, 3)


@given(st.binary(max_size=64), st.integers(1, 10_000))
def test_random_bytes_raise_only_payload_error(blob: bytes, dim: int) -> None:
    try:
        indices = decode_indices(blob, dim)
    except PayloadError:
        return
    assert indices.ndim == 1
    assert np.all(np.diff(indices) > 0)
    assert indices.size == 0 or (indices[0] >= 0 and indices[-1] < dim)


@given(index_sets(max_dim=2000), st.data())
def test_mutated_blobs_raise_only_payload_error(
    case: tuple[int, np.ndarray], data: st.DataObject
) -> None:
    dim, indices = case
    blob = bytearray(encode_indices(indices, dim))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_indices(bytes(blob), dim)
    except PayloadError:
        return
    assert np.all(np.diff(decoded) > 0)
    assert decoded.size == 0 or decoded[-1] < dim
