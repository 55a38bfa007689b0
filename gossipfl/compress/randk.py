"""GossipFL's shared-seed random-k: both sides derive S from one seed."""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np

from gossipfl.compress.base import Selection, clamp_k
from gossipfl.compress.codec import FloatArray, IndexArray
from gossipfl.compress.errors import PayloadError

_WIRE = struct.Struct("<QI")  # seed, k


def shared_mask(seed: int, dim: int, k: int) -> IndexArray:
    """The k sorted coordinates that ``seed`` stands for; the same on every
    machine and numpy version that keeps ``PCG64``'s stream."""
    rng = np.random.Generator(np.random.PCG64(seed))
    indices = rng.choice(dim, size=k, replace=False, shuffle=False).astype(np.int64)
    indices.sort()
    return indices


class SharedSeedRandomK:
    """S = k uniformly random coordinates; only a seed and k travel.

    The residual is ignored: this is the baseline that error feedback is
    measured against.
    """

    name: ClassVar[str] = "randk-shared"

    def select(self, residual: FloatArray, k: int, rng: np.random.Generator) -> Selection:
        k = clamp_k(k, residual.size)
        seed = int(rng.integers(0, 2**63))
        return Selection(shared_mask(seed, residual.size, k), _WIRE.pack(seed, k))

    def resolve(self, wire: bytes, dim: int, max_count: int) -> IndexArray:
        if len(wire) != _WIRE.size:
            raise PayloadError(f"random-k descriptor of {len(wire)} bytes, expected {_WIRE.size}")
        seed, k = _WIRE.unpack(wire)
        if not 1 <= k <= min(dim, max_count):
            raise PayloadError(f"random-k count {k} outside 1..{min(dim, max_count)}")
        return shared_mask(seed, dim, k)

    def index_bytes(self, dim: int, k: int) -> float:
        return float(_WIRE.size)
