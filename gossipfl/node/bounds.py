"""What a peer's values may be: a bound relative to our own model.

A member with a valid certificate can still send anything its codec can
carry.  Values of 1e30 (or float32's largest, 3.4e38) are finite, pass the
codec, and once merged overflow the next training step: the node's model
turns to NaN, and so does every neighbour that merges with it.  So a slice
of values from a peer (an exchange, a reply, a pulled model) is refused
before it touches the model when

- one of its values exceeds ``ratio`` x our model's largest magnitude, or
- its norm exceeds ``ratio`` x the norm of our own values at the same
  coordinates,

where both of ours are raised to ``floor`` per coordinate: a fresh model is
all near zero, and the first honest updates must get through.

What it does not stop: a member that moves the swarm slowly, within the
bound, round after round (see docs/security.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gossipfl.compress.codec import FloatArray


@dataclass(frozen=True)
class ValueBound:
    """``ratio``: how many times our own scale a peer's values may reach;
    ``floor``: the smallest scale per coordinate, for a fresh model."""

    ratio: float = 10.0
    floor: float = 1.0

    def __post_init__(self) -> None:
        if not (self.ratio >= 1 and self.floor > 0):
            raise ValueError(f"need ratio >= 1 and floor > 0, got {self}")

    def violation(self, received: FloatArray, ours: FloatArray, model: FloatArray) -> str | None:
        """Why ``received`` (a peer's values where we hold ``ours``) is out
        of bounds for our ``model``, or ``None`` if it is within them."""
        if received.size == 0:
            return None
        scale = max(self.floor, float(model.max(initial=0.0)), -float(model.min(initial=0.0)))
        peak = max(float(received.max()), -float(received.min()))
        if peak > self.ratio * scale:
            return (
                f"a value of magnitude {peak:.3g} is beyond {self.ratio:g}x our model's "
                f"largest ({scale:.3g})"
            )
        norm = float(np.linalg.norm(received))
        own = max(float(np.linalg.norm(ours)), self.floor * math.sqrt(received.size))
        if norm > self.ratio * own:
            return (
                f"the values' norm {norm:.3g} is beyond {self.ratio:g}x ours at the same "
                f"{received.size} coordinates ({own:.3g})"
            )
        return None
