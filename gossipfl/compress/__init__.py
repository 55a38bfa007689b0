"""Sparsifiers and the sparse payload codec.  Pure numpy; imports nothing
else of gossipfl."""

from gossipfl.compress.base import Compressor, Selection
from gossipfl.compress.budget import exchange_k
from gossipfl.compress.codec import (
    ValueDtype,
    decode_indices,
    decode_values,
    encode_indices,
    encode_values,
    quantize,
    value_size,
)
from gossipfl.compress.dense import Dense
from gossipfl.compress.errors import PayloadError
from gossipfl.compress.pairwise import merge, outgoing_values, record_training
from gossipfl.compress.randk import SharedSeedRandomK
from gossipfl.compress.slice import SparseSlice, decode_slice, encode_slice
from gossipfl.compress.topk import TopKWithFeedback, log2_binomial, top_k_indices

__all__ = [
    "Compressor",
    "Dense",
    "PayloadError",
    "Selection",
    "SharedSeedRandomK",
    "SparseSlice",
    "TopKWithFeedback",
    "ValueDtype",
    "decode_indices",
    "decode_slice",
    "decode_values",
    "encode_indices",
    "encode_slice",
    "encode_values",
    "exchange_k",
    "log2_binomial",
    "merge",
    "outgoing_values",
    "quantize",
    "record_training",
    "top_k_indices",
    "value_size",
]
