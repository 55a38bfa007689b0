"""The in-process swarm: production nodes in virtual time, and what it costs.

Runs ``digits-logreg`` swarms (Dirichlet(0.5) shards, density 10%, one
local step per round, 50 ms of virtual time per step) with the real node
engine, over memory streams with and without TLS, for a fixed virtual
duration (``simnet.swarm``).  As the baseline, in the same run: the
algorithm-only loop ``simnet.rounds`` with the same peers and steps (no
network, no clock, no protocol).  Both wall times include building the
nodes; the ratio says what running the deployable node costs over the bare
algorithm.

Target: the 16-node swarm of tests/test_swarm.py (15 s virtual) with 64
nodes and TLS off in under 30 s of wall time on a 2-core machine.

    python bench/swarm.py [--peers 16 64] [--duration 15] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

import numpy as np
import structlog

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _table import print_table, write_json

from simnet.rounds import RoundConfig, run_rounds
from simnet.swarm import SwarmSpec, run_swarm

OPTIONS = {"partition": "dirichlet", "alpha": 0.5}
STEP_COST_S = 0.05


def _engine(peers: int, duration: float, tls: bool) -> dict[str, Any]:
    spec = SwarmSpec(
        peers=peers,
        trainer_options=OPTIONS,
        gossip={"density": 0.1},
        duration_s=duration,
        step_cost_s=STEP_COST_S,
        tls=tls,
    )
    start = time.perf_counter()
    result = run_swarm(spec)
    wall = time.perf_counter() - start  # with set-up, as the baseline's
    exchanges = sum(n.counters["exchanges"] for n in result.nodes)
    steps = sum(n.counters["steps"] for n in result.nodes)
    return {
        "peers": peers,
        "case": f"node engine, TLS {'on' if tls else 'off'}",
        "wall_s": wall,
        "virtual_s": result.virtual_time_s,
        "steps": steps,
        "exchanges": exchanges,
        "exchanges_per_wall_s": exchanges / wall,
        "mean_accuracy": float(np.mean([n.accuracy for n in result.nodes])),
    }


def _baseline(peers: int, rounds: int) -> dict[str, Any]:
    config = RoundConfig(
        trainer_options=OPTIONS, peers=peers, density=0.1, rounds=rounds, local_steps=1
    )
    start = time.perf_counter()
    result = run_rounds(config)
    wall = time.perf_counter() - start
    return {
        "peers": peers,
        "case": "algorithm only (simnet.rounds)",
        "wall_s": wall,
        "steps": peers * rounds,
        "exchanges": result.exchanges,
        "exchanges_per_wall_s": result.exchanges / wall,
        "mean_accuracy": result.final.mean_accuracy,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--duration", type=float, default=15.0, help="virtual seconds")
    parser.add_argument("--tls-up-to", type=int, default=16, help="TLS runs for peers <= this")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only shows the bench works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.peers, args.duration = [4], 2.0
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    _baseline(2, 1)  # warm-up: imports and the data set load once, outside every timing
    rows: list[dict[str, Any]] = []
    for peers in args.peers:
        baseline = _baseline(peers, round(args.duration / STEP_COST_S))
        runs = [_engine(peers, args.duration, tls=False)]
        if peers <= args.tls_up_to:
            runs.append(_engine(peers, args.duration, tls=True))
        for row in runs:
            row["vs_baseline_wall"] = row["wall_s"] / baseline["wall_s"]
            row["virtual_per_wall"] = row["virtual_s"] / row["wall_s"]
        rows += [baseline, *runs]
        print(f"{peers} peers done", file=sys.stderr, flush=True)
    write_json(args.json, rows)
    print_table(
        f"digits-logreg swarms, {args.duration:g} s virtual, {STEP_COST_S * 1e3:g} ms per step",
        rows,
        [
            "peers",
            "case",
            "wall_s",
            "vs_baseline_wall",
            "virtual_per_wall",
            "steps",
            "exchanges",
            "exchanges_per_wall_s",
            "mean_accuracy",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
