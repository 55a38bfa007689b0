"""Compression speed and size: select + encode + decode of top-k slices.

For 1M and 10M float32 at densities 1% and 0.1%, the median time of
selecting S (top-k of |residual|), encoding S and the values, and decoding
them, next to the time of a plain numpy copy of the same vector measured in
the same run; and the index bytes next to the entropy bound log2(C(n,k))/8.

    python bench/compress.py [--repeats 15] [--quick] [--json rows.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _table import median, print_table, write_json

from gossipfl.compress import (
    TopKWithFeedback,
    decode_indices,
    decode_values,
    encode_values,
    log2_binomial,
)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up caches and allocator
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return median(samples) * 1e3


def measure(dim: int, density: float, repeats: int, rng: np.random.Generator) -> dict[str, Any]:
    residual = rng.standard_normal(dim).astype(np.float32)
    params = rng.standard_normal(dim).astype(np.float32)
    k = max(1, round(dim * density))
    topk = TopKWithFeedback()
    selection = topk.select(residual, k, rng)
    values_blob = encode_values(params[selection.indices])

    def select_encode() -> object:
        chosen = topk.select(residual, k, rng)
        return encode_values(params[chosen.indices])

    def decode() -> object:
        indices = decode_indices(selection.wire, dim)
        return decode_values(values_blob, indices.size)

    copy_ms = _median_ms(lambda: residual.copy(), repeats)
    select_encode_ms = _median_ms(select_encode, repeats)
    decode_ms = _median_ms(decode, repeats)
    bound = log2_binomial(dim, k) / 8
    return {
        "dim": dim,
        "density": density,
        "k": k,
        "numpy_copy_ms": copy_ms,
        "select_encode_ms": select_encode_ms,
        "decode_ms": decode_ms,
        "select_encode_vs_copy": select_encode_ms / copy_ms,
        "index_bytes": len(selection.wire),
        "entropy_bound_bytes": bound,
        "index_vs_bound": len(selection.wire) / bound,
        "index_bytes_per_entry": len(selection.wire) / k,
        "value_bytes": len(values_blob),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", nargs="+", type=int, default=[1_000_000, 10_000_000])
    parser.add_argument("--densities", nargs="+", type=float, default=[0.01, 0.001])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only shows the bench works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.dims, args.densities, args.repeats = [100_000], [0.01], 3
    rng = np.random.default_rng(0)
    rows = [measure(d, p, args.repeats, rng) for d in args.dims for p in args.densities]
    write_json(args.json, rows)
    print_table(
        f"top-k compression, median of {args.repeats}",
        rows,
        [
            "dim",
            "density",
            "k",
            "numpy_copy_ms",
            "select_encode_ms",
            "decode_ms",
            "select_encode_vs_copy",
            "index_bytes",
            "entropy_bound_bytes",
            "index_vs_bound",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
