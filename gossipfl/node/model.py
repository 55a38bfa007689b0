"""A node's model state: parameters and error-feedback residual.

Owned by one node and touched only from its trio thread.  Merges are
applied when they are committed, in delta form, to the model as it stands;
training runs on a snapshot and lands as a delta too (:meth:`trained`), so
a merge that arrives while the node trains is neither lost nor undone, and
the two sides' sum is preserved (DESIGN.md section 3).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import trio

from gossipfl.compress import ValueDtype, merge, outgoing_values
from gossipfl.compress.codec import FloatArray, IndexArray


def model_hash(params: FloatArray) -> bytes:
    """SHA-256 of a model's float32 little-endian bytes (the hello's
    ``model_hash`` of the initial model)."""
    return hashlib.sha256(np.ascontiguousarray(params, dtype="<f4").tobytes()).digest()


class NonFiniteError(ValueError):
    """An update would have made the model or residual NaN or infinite; it
    was not applied."""


@dataclass(frozen=True)
class Outgoing:
    """What one side put on the wire for an exchange over ``indices``:
    the values as the peer decodes them, and the residual they carried
    (the part of it that the merge settles)."""

    indices: IndexArray
    values: FloatArray
    residual: FloatArray


@dataclass
class ModelState:
    """``in_exchange`` enforces one exchange at a time.  ``ready`` is false
    while a fresh node pulls its first model: it answers ``busy`` until then,
    since anything merged into its initial weights would be thrown away.

    While the node *answers* an exchange, one more request may wait for
    the slot (``queued``) instead of being answered ``busy``: an answer
    waits on no one but its own initiator, so the wait is short and no
    cycle of waiting nodes can form (an initiating node never queues)."""

    params: FloatArray
    residual: FloatArray
    in_exchange: bool = False
    answering: bool = False  # the exchange in progress is one we answer
    queued: bool = False  # a request waits for the slot
    ready: bool = True
    _freed: trio.Event = field(default_factory=trio.Event, repr=False)

    @classmethod
    def initial(cls, params: FloatArray) -> ModelState:
        return cls(params.astype(np.float32, copy=True), np.zeros(params.size, dtype=np.float32))

    def busy(self) -> bool:
        """In an exchange now (either side), or promised the next one.  A
        method, not a field read, so checks after an ``await`` are not
        mistaken for repeats."""
        return self.in_exchange or self.queued

    def accepting(self) -> bool:
        """May answer a peer's exchange or model request now."""
        return self.ready and not self.busy()

    def take(self, *, answering: bool) -> None:
        """Take the exchange slot (it must be free)."""
        if self.in_exchange:
            raise RuntimeError("the node is already in an exchange")
        self.in_exchange, self.answering = True, answering

    def release(self) -> None:
        """Give the exchange slot back, and wake a request queued for it."""
        self.in_exchange = self.answering = False
        self._freed.set()
        self._freed = trio.Event()

    async def queue_for_slot(self, limit_s: float) -> bool:
        """Wait up to ``limit_s`` for the slot, if the node is answering an
        exchange and nothing else waits; returns whether the slot is free
        now (then nothing else can take it before the caller's next
        ``await``)."""
        if not (self.ready and self.answering and not self.queued):
            return False
        self.queued = True
        try:
            with trio.move_on_after(limit_s):
                while self.in_exchange:
                    await self._freed.wait()
        finally:
            self.queued = False
        return not self.in_exchange

    @property
    def dim(self) -> int:
        return int(self.params.size)

    def replace(self, params: FloatArray, residual: FloatArray | None = None) -> None:
        """Adopt another model (a pulled one, a checkpoint) in place: every
        connection holds this object, so it is never swapped for another."""
        if params.shape != self.params.shape:
            raise ValueError(f"model of {params.size} coordinates, expected {self.dim}")
        self.params[:] = params
        if residual is None:
            self.residual[:] = 0.0
        else:
            self.residual[:] = residual

    def outgoing(self, indices: IndexArray, dtype: ValueDtype) -> Outgoing:
        return Outgoing(
            indices, outgoing_values(self.params, indices, dtype), self.residual[indices]
        )

    def merge(self, sent: Outgoing, received: FloatArray) -> None:
        """Apply our half of a committed exchange: move halfway to the
        partner over the exchanged coordinates, and settle the residual
        they carried.  Training recorded since then stays in the residual.

        Raises :class:`NonFiniteError`, with nothing applied, if the result
        would not be finite."""
        at = sent.indices
        params, residual = self.params[at], self.residual[at]  # copies, to roll back
        with np.errstate(over="ignore", invalid="ignore"):
            merge(self.params, self.residual, at, sent.values, received, sent.residual)
        if not (np.isfinite(self.params[at]).all() and np.isfinite(self.residual[at]).all()):
            self.params[at], self.residual[at] = params, residual
            raise NonFiniteError("the merge would make the model non-finite")

    def trained(self, before: FloatArray, after: FloatArray) -> None:
        """Record a training run that took the snapshot ``before`` to
        ``after``: its change goes into the model and the residual.

        Raises :class:`NonFiniteError`, with nothing applied, if the
        training diverged (or would make the model non-finite)."""
        with np.errstate(over="ignore", invalid="ignore"):
            change = after - before
            params, residual = self.params + change, self.residual + change
        if not (np.isfinite(params).all() and np.isfinite(residual).all()):
            raise NonFiniteError("training produced non-finite parameters")
        self.params[:] = params
        self.residual[:] = residual

    def snapshot(self) -> tuple[FloatArray, FloatArray]:
        """Copies of (params, residual) at this instant."""
        return self.params.copy(), self.residual.copy()
