"""Compression in the running swarm: ``dense`` against ``randk-shared``
and ``topk-ef`` at 10% and 1%, IID and label-skewed Dirichlet(0.1) shards.

Each case is one ``gossipfl simulate`` run (production nodes, emulated
``edge-hetero`` links, virtual time, TLS off) of ``digits-logreg``.  Per
case: final mean node accuracy, megabytes all nodes sent, virtual seconds
and megabytes until the mean node reaches the target (empty: not reached),
and the bytes-to-target ratio against ``dense`` in the same run.  With
``--figure FILE``, accuracy against megabytes and against virtual time,
one panel per partition (needs matplotlib, ``gossipfl[sim]``).

    python bench/compression_sim.py [--peers 32] [--duration 30] [--target 0.8]
        [--figure docs/compression.png] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _table import print_table, write_json

from simnet.scenario import BUILT_IN
from simnet.simulate import SimulationResult, SimulationSpec, run_simulation

CASES = (
    ("dense", 1.0),
    ("randk-shared", 0.1),
    ("topk-ef", 0.1),
    ("randk-shared", 0.01),
    ("topk-ef", 0.01),
)
PARTITIONS: dict[str, dict[str, Any]] = {
    "iid": {"partition": "iid"},
    "dirichlet(0.1)": {"partition": "dirichlet", "alpha": 0.1},
}


def run_case(
    args: argparse.Namespace, partition: str, compressor: str, density: float
) -> tuple[dict[str, Any], SimulationResult]:
    spec = SimulationSpec(
        BUILT_IN["edge-hetero"],
        peers=args.peers,
        trainer="digits-logreg",
        trainer_options=PARTITIONS[partition],
        compressor=compressor,
        gossip={"density": density},
        duration_s=args.duration,
        seed=args.seed,
        tls=False,
        target_accuracy=args.target,
    )
    result = run_simulation(spec)
    summary = result.summary
    reached = next((t for t in result.ticks if t.mean_accuracy >= args.target), None)
    return {
        "partition": partition,
        "compressor": f"{compressor} {density:g}",
        "mean_accuracy": summary["mean_accuracy"],
        "megabytes": summary["bytes_sent"] / 1e6,
        "time_to_target_s": reached.virtual_time_s if reached else None,
        "mb_to_target": reached.bytes_sent / 1e6 if reached else None,
        "exchanges": summary["exchanges"],
    }, result


def draw(path: str, curves: dict[str, dict[str, SimulationResult]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(curves), figsize=(6 * len(curves), 8), squeeze=False)
    for column, (partition, results) in enumerate(curves.items()):
        for label, result in results.items():
            accuracy = [t.mean_accuracy for t in result.ticks]
            axes[0][column].plot([t.bytes_sent / 1e6 for t in result.ticks], accuracy, label=label)
            axes[1][column].plot([t.virtual_time_s for t in result.ticks], accuracy, label=label)
        axes[0][column].set(title=partition, xlabel="MB sent by all nodes", xscale="log")
        axes[1][column].set(xlabel="virtual time (s)")
        for row in axes:
            row[column].set_ylabel("mean node accuracy")
            row[column].grid(alpha=0.3)
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0, help="virtual seconds")
    parser.add_argument("--target", type=float, default=0.8, help="mean node accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, help="write accuracy curves here (PNG)")
    parser.add_argument("--quick", action="store_true", help="a tiny run, to check it works")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    partitions = list(PARTITIONS)
    cases: tuple[tuple[str, float], ...] = CASES
    if args.quick:
        args.peers, args.duration, partitions, cases = 6, 3.0, ["iid"], CASES[:2]
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, SimulationResult]] = {}
    for partition in partitions:
        curves[partition] = {}
        first = len(rows)
        for compressor, density in cases:
            row, result = run_case(args, partition, compressor, density)
            rows.append(row)
            curves[partition][row["compressor"]] = result
        dense = rows[first]["mb_to_target"]
        for row in rows[first:]:
            mine = row["mb_to_target"]
            row["bytes_vs_dense"] = mine / dense if mine and dense else None
    columns = [
        "partition",
        "compressor",
        "mean_accuracy",
        "megabytes",
        "time_to_target_s",
        "mb_to_target",
        "bytes_vs_dense",
        "exchanges",
    ]
    print_table(
        f"compression on edge-hetero, digits-logreg, {args.peers} peers, "
        f"{args.duration:g} virtual s, target {args.target} (empty: not reached)",
        rows,
        columns,
    )
    write_json(args.json, rows)
    if args.figure:
        draw(args.figure, curves)


if __name__ == "__main__":
    main()
