"""The compressor interface: how an initiator chooses the index set S.

A compressor is stateless.  The error-feedback residual it may read belongs
to the node (see :mod:`gossipfl.compress.pairwise`); what a compressor adds is
the policy that turns a residual into S and the description of S that
travels on the wire, from which the responder rebuilds the same S.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from gossipfl.compress.codec import FloatArray, IndexArray


@dataclass(frozen=True)
class Selection:
    """An index set S chosen by an initiator.

    ``indices`` are strictly increasing int64; ``wire`` is the compressor's
    description of them, which :meth:`Compressor.resolve` turns back into
    the same ``indices`` on the responder.
    """

    indices: IndexArray
    wire: bytes


@runtime_checkable
class Compressor(Protocol):
    """Chooses S and says how it travels.  Registered in the entry point group
    ``gossipfl.compressors``; the entry point is a class called with no
    arguments.  Methods are pure and never block on IO.

    Optional: a ``params`` string naming wire parameters both sides must
    share (e.g. ``"bits=4"``).  ``hello`` carries ``name(params)``, and
    peers whose strings differ are refused there, with the reason, instead
    of failing every exchange.
    """

    name: ClassVar[str]

    def select(self, residual: FloatArray, k: int, rng: np.random.Generator) -> Selection:
        """Choose ``k`` coordinates (clamped to ``1..len(residual)``).

        ``residual`` is the node's error-feedback vector; ``rng`` is the only
        source of randomness.  Raises ``ValueError`` for an empty residual.
        """
        ...

    def resolve(self, wire: bytes, dim: int, max_count: int) -> IndexArray:
        """Rebuild S from a peer's ``wire`` for a model of ``dim``
        coordinates, allowing at most ``max_count`` of them.

        Raises :class:`~gossipfl.compress.errors.PayloadError` for malformed
        or oversized input, never anything else.
        """
        ...

    def index_bytes(self, dim: int, k: int) -> float:
        """Expected wire bytes of a selection of ``k`` out of ``dim``; used to
        size ``k`` to a link's byte budget."""
        ...


def clamp_k(k: int, dim: int) -> int:
    """``k`` limited to ``1..dim``; raises ``ValueError`` for an empty model."""
    if dim <= 0:
        raise ValueError("cannot select from an empty model")
    return max(1, min(int(k), dim))
