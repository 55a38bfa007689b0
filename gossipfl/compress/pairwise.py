"""The pairwise exchange of DESIGN.md section 3, as plain array functions.

Every node holds its model ``params`` and an error-feedback ``residual``: the
change to each coordinate since that coordinate was last exchanged.  An
exchange with index set S goes:

1. the initiator picks S (its compressor, from its residual) and sends
   ``sent_i = quantize(params_i[S])``;
2. the responder replies ``sent_j = quantize(params_j[S])``;
3. each side merges in delta form against what it sent:
   ``params[S] += (received - sent) / 2``, and takes the residual it sent
   out of the residual (``residual[S] -= residual_sent``; zero when nothing
   was trained in between, and otherwise what training added since stays).

Both sides use the *quantized* values that actually travelled, so the two
changes are exact negatives of each other: the sum of the two models is
preserved even with float16 values, and even when a side trained between
sending and merging.  The change the merge makes is not added to the
residual: only local training is error to feed back.

The functions update arrays in place: models have millions of coordinates
and the node owns its arrays.
"""

from __future__ import annotations

import numpy as np

from gossipfl.compress.codec import FloatArray, IndexArray, ValueDtype, quantize


def record_training(residual: FloatArray, before: FloatArray, after: FloatArray) -> None:
    """Add the change local training made (``after - before``) to ``residual``."""
    residual += after
    residual -= before


def outgoing_values(params: FloatArray, indices: IndexArray, dtype: ValueDtype) -> FloatArray:
    """``params[S]`` exactly as the peer will decode them; keep them as the
    ``sent`` argument of :func:`merge`."""
    return quantize(params[indices], dtype)


def merge(
    params: FloatArray,
    residual: FloatArray,
    indices: IndexArray,
    sent: FloatArray,
    received: FloatArray,
    residual_sent: FloatArray | None = None,
) -> None:
    """Apply one side's half of an exchange over S = ``indices``.

    ``sent`` are the values this side put on the wire, ``received`` the
    partner's, ``residual_sent`` this side's ``residual[S]`` when it sent
    (``None``: all of ``residual[S]``, i.e. nothing trained since).  Raises
    ``ValueError`` when the lengths disagree.
    """
    shapes = {indices.shape, sent.shape, received.shape}
    if residual_sent is not None:
        shapes.add(residual_sent.shape)
    if len(shapes) != 1:
        raise ValueError(
            f"merge needs equal lengths, got {indices.size} indices, "
            f"{sent.size} sent and {received.size} received values"
        )
    delta = (received - sent) * np.float32(0.5)
    params[indices] += delta
    if residual_sent is None:
        residual[indices] = 0.0
    else:
        residual[indices] -= residual_sent
