"""Dense exchange: S is the whole model (plain gossip averaging)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gossipfl.compress.base import Selection
from gossipfl.compress.codec import FloatArray, IndexArray
from gossipfl.compress.errors import PayloadError


class Dense:
    """Every coordinate, every time; k is ignored and nothing but the values
    travels.  The baseline for bytes on the wire."""

    name: ClassVar[str] = "dense"

    def select(self, residual: FloatArray, k: int, rng: np.random.Generator) -> Selection:
        if residual.size == 0:
            raise ValueError("cannot select from an empty model")
        return Selection(np.arange(residual.size, dtype=np.int64), b"")

    def resolve(self, wire: bytes, dim: int, max_count: int) -> IndexArray:
        if wire:
            raise PayloadError(f"dense exchange carries no index bytes, got {len(wire)}")
        if dim > max_count:
            raise PayloadError(f"dense exchange of {dim} values exceeds the limit {max_count}")
        return np.arange(dim, dtype=np.int64)

    def index_bytes(self, dim: int, k: int) -> float:
        return 0.0
