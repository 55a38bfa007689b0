"""A node's model state: parameters, error-feedback residual, and merges
waiting for the next step boundary."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from gossipfl.compress import ValueDtype, merge, outgoing_values, record_training
from gossipfl.compress.codec import FloatArray, IndexArray


def model_hash(params: FloatArray) -> bytes:
    """SHA-256 of a model's float32 little-endian bytes (the hello's
    ``model_hash`` of the initial model)."""
    return hashlib.sha256(np.ascontiguousarray(params, dtype="<f4").tobytes()).digest()


@dataclass
class PendingMerge:
    indices: IndexArray
    sent: FloatArray
    received: FloatArray


@dataclass
class ModelState:
    """Owned by one node; touched only from its trio thread.

    ``in_exchange`` enforces one exchange at a time.  A responder does not
    merge while the node trains: it queues the merge, and the gossip loop
    applies the queue at its next step boundary (DESIGN.md section 3).
    """

    params: FloatArray
    residual: FloatArray
    in_exchange: bool = False
    pending: list[PendingMerge] = field(default_factory=list)

    @classmethod
    def initial(cls, params: FloatArray) -> ModelState:
        return cls(params.astype(np.float32, copy=True), np.zeros(params.size, dtype=np.float32))

    def busy(self) -> bool:
        """In an exchange now (either side).  A method, not a field read, so
        checks after an ``await`` are not mistaken for repeats."""
        return self.in_exchange

    @property
    def dim(self) -> int:
        return int(self.params.size)

    def replace(self, params: FloatArray, residual: FloatArray | None = None) -> None:
        """Adopt another model (a pulled one, a checkpoint) in place: every
        connection holds this object, so it is never swapped for another."""
        if params.shape != self.params.shape:
            raise ValueError(f"model of {params.size} coordinates, expected {self.dim}")
        self.params = params.astype(np.float32, copy=True)
        self.residual = (
            np.zeros_like(self.params)
            if residual is None
            else residual.astype(np.float32, copy=True)
        )
        self.pending.clear()

    def outgoing(self, indices: IndexArray, dtype: ValueDtype) -> FloatArray:
        return outgoing_values(self.params, indices, dtype)

    def merge_now(self, indices: IndexArray, sent: FloatArray, received: FloatArray) -> None:
        merge(self.params, self.residual, indices, sent, received)

    def merge_later(self, indices: IndexArray, sent: FloatArray, received: FloatArray) -> None:
        self.pending.append(PendingMerge(indices, sent, received))

    def apply_pending(self) -> int:
        """Apply queued merges in order; returns how many there were."""
        count = len(self.pending)
        for item in self.pending:
            self.merge_now(item.indices, item.sent, item.received)
        self.pending.clear()
        return count

    def trained(self, before: FloatArray, after: FloatArray) -> None:
        """Record a training step that took ``before`` to ``after``."""
        record_training(self.residual, before, after)
        self.params = after.astype(np.float32, copy=True)
