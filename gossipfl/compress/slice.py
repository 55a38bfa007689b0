"""The sparse slice an initiator sends: S and x[S], and its byte codec."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gossipfl.compress.codec import (
    FloatArray,
    IndexArray,
    ValueDtype,
    decode_indices,
    decode_values,
    encode_indices,
    encode_values,
)
from gossipfl.compress.errors import PayloadError


@dataclass(frozen=True)
class SparseSlice:
    """Coordinates ``indices`` (strictly increasing, below ``dim``) of a
    ``dim``-coordinate model and their ``values``."""

    dim: int
    indices: IndexArray
    values: FloatArray

    def __post_init__(self) -> None:
        if self.indices.shape != self.values.shape:
            raise ValueError(
                f"{self.indices.size} indices but {self.values.size} values in a sparse slice"
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseSlice):
            return NotImplemented
        return (
            self.dim == other.dim
            and np.array_equal(self.indices, other.indices)
            and np.array_equal(self.values, other.values)
        )

    __hash__ = None  # type: ignore[assignment]


def encode_slice(piece: SparseSlice, dtype: ValueDtype = "float32") -> tuple[bytes, bytes]:
    """The two wire blobs of a slice: index set, then values."""
    return encode_indices(piece.indices, piece.dim), encode_values(piece.values, dtype)


def decode_slice(
    index_blob: bytes,
    value_blob: bytes,
    dim: int,
    dtype: ValueDtype = "float32",
    max_count: int | None = None,
) -> SparseSlice:
    """Decode and validate a peer's slice; raises :class:`PayloadError`."""
    indices = decode_indices(index_blob, dim, max_count)
    values = decode_values(value_blob, indices.size, dtype)
    return SparseSlice(dim, indices, values)


__all__ = ["PayloadError", "SparseSlice", "decode_slice", "encode_slice"]
