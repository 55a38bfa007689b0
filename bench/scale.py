"""What running the production node costs at scale: ``gossipfl simulate``
swarms of ``digits-logreg`` on ``edge-hetero`` at several sizes, with TLS
on and off, against the algorithm alone (``simnet.rounds``: the same
peers, steps and exchanges with no node, protocol, network or clock) as
the floor, measured in the same run.

Each case runs in its own process, so its peak memory is its own.  Per
case: wall time (building the nodes included), wall time and CPU time per
1,000 exchanges, peak RSS, and the node's cost as a ratio to the floor's
wall time per 1,000 exchanges.  An exchange is one completed pairwise
exchange (two nodes take part); ``exchanges_per_node`` counts both sides.

Targets (issue 9): 1000 peers, about 20 exchanges per node, TLS off: under
40 s wall and 2 GB peak RSS on a 2-core machine; with TLS on, under 4
minutes.

    python bench/scale.py [--peers 100 300 1000] [--rounds 19] [--no-tls-on]
        [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _table import print_table, write_json

_NODE = """
import json, sys
from simnet.scenario import BUILT_IN
from simnet.simulate import SimulationSpec, run_simulation
peers, rounds, tls = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "on"
spec = SimulationSpec(BUILT_IN["edge-hetero"], peers=peers, rounds=rounds, tls=tls,
                      gossip={"density": 0.1})
print(json.dumps(run_simulation(spec).summary))
"""

_FLOOR = """
import json, sys
from simnet.rounds import RoundConfig, run_rounds
peers, rounds = int(sys.argv[1]), int(sys.argv[2])
result = run_rounds(RoundConfig(peers=peers, rounds=rounds, density=0.1))
print(json.dumps({"exchanges": result.exchanges}))
"""


def _child(source: str, *args: str) -> tuple[dict[str, Any], float, float, float]:
    """Run ``source`` in a fresh interpreter; (its JSON line, wall s, CPU s,
    peak RSS MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", source, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()  # to the end before reaping: a full pipe would block the child
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"case {args} failed (status {status}); output: {out[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return json.loads(out.strip().splitlines()[-1]), wall, cpu, usage.ru_maxrss / 1024


def _row(
    case: str, peers: int, exchanges: int, wall: float, cpu: float, rss: float
) -> dict[str, Any]:
    per_k = 1000 / max(exchanges, 1)
    return {
        "case": case,
        "peers": peers,
        "exchanges": exchanges,
        "exchanges_per_node": 2 * exchanges / peers,
        "wall_s": wall,
        "wall_s_per_1k_exchanges": wall * per_k,
        "cpu_ms_per_exchange": 1000 * cpu / max(exchanges, 1),
        "peak_rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument(
        "--rounds",
        type=float,
        default=19.0,
        help="mean gossip rounds per node (19: about 20 exchanges each)",
    )
    parser.add_argument("--no-tls-on", action="store_true", help="skip the TLS-on cases")
    parser.add_argument("--quick", action="store_true", help="100 peers, 10 rounds, TLS off")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.peers, args.rounds, args.no_tls_on = [100], 10.0, True
    rows = []
    for peers in args.peers:
        floor, wall, cpu, rss = _child(_FLOOR, str(peers), str(round(args.rounds)))
        base = _row("rounds (floor)", peers, floor["exchanges"], wall, cpu, rss)
        rows.append(base)
        for tls in ("off",) if args.no_tls_on else ("off", "on"):
            summary, wall, cpu, rss = _child(_NODE, str(peers), str(args.rounds), tls)
            row = _row(f"node, TLS {tls}", peers, summary["exchanges"], wall, cpu, rss)
            row["vs_floor"] = row["wall_s_per_1k_exchanges"] / base["wall_s_per_1k_exchanges"]
            rows.append(row)
            print(f"  {peers} peers, TLS {tls}: {wall:.1f} s wall", file=sys.stderr)
    columns = [
        "case",
        "peers",
        "exchanges",
        "exchanges_per_node",
        "wall_s",
        "wall_s_per_1k_exchanges",
        "cpu_ms_per_exchange",
        "peak_rss_mb",
        "vs_floor",
    ]
    title = (
        f"Scale: digits-logreg on edge-hetero, {args.rounds:g} rounds per node "
        "(target: 1000 peers, TLS off < 40 s and < 2 GB; TLS on < 240 s)"
    )
    print_table(title, rows, columns)
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
