"""Partner selection on a synthetic swarm with three bandwidth tiers.

64 peers, a third each at 1, 10 and 100 Mbit/s; a link runs at the slower
end's rate.  Every round each node, in random order, asks its selector for
candidates and exchanges with the first one not yet busy this round (as a
busy peer would answer ``busy``).  Decentralized selectors learn link
bandwidths from their own exchanges, starting from nothing.
``oracle-matching`` sees the whole bandwidth matrix.

Prints the mean bandwidth of the links chosen, its ratio to the oracle's in
the same run, and the worst staleness: the most rounds any node went
without contact with any one live peer.

    python bench/partner_selection.py [--peers 64] [--rounds 1000] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _table import print_table, write_json

from gossipfl.topology.oracle import OracleMatching
from gossipfl.topology.peers import PeerTable
from gossipfl.topology.selectors import BandwidthAware, Selector, Uniform

MBIT = 1e6 / 8  # bytes per second
EXCHANGE_BYTES = 1_000_000
HELLO_BYTES = 300


def tiers(peers: int, rng: np.random.Generator) -> np.ndarray:
    rates = np.array([1, 10, 100])[np.arange(peers) % 3] * MBIT
    rng.shuffle(rates)
    bandwidth = np.minimum.outer(rates, rates)
    np.fill_diagonal(bandwidth, 0)
    return bandwidth


class Staleness:
    def __init__(self, peers: int) -> None:
        self.last = np.zeros((peers, peers), dtype=np.int64)
        self.worst = 0

    def contact(self, i: int, j: int, round_: int) -> None:
        self.last[i, j] = self.last[j, i] = round_

    def close_round(self, round_: int) -> None:
        gaps = round_ - self.last
        np.fill_diagonal(gaps, 0)
        self.worst = max(self.worst, int(gaps.max()))


def run_decentralized(
    selector: Selector, bandwidth: np.ndarray, rounds: int, seed: int
) -> dict[str, Any]:
    peers = bandwidth.shape[0]
    rng = np.random.default_rng(seed)
    tables = []
    for i in range(peers):
        table = PeerTable(f"n{i:03d}")
        for j in range(peers):
            table.announced(f"n{j:03d}", "sim", j, "swarm", 1, now=0.0)
        tables.append(table)
    chosen: list[float] = []
    staleness = Staleness(peers)
    for round_ in range(1, rounds + 1):
        engaged = np.zeros(peers, dtype=bool)
        for i in rng.permutation(peers):
            if engaged[i]:
                continue
            for candidate in selector.rank(tables[i].live(0.0), round_, rng):
                j = int(candidate.node_id[1:])
                if engaged[j]:
                    continue  # busy: try the next candidate
                engaged[i] = engaged[j] = True
                for a, b in ((i, j), (j, i)):
                    tables[a].succeeded(f"n{b:03d}", 0.0, round_)
                    # A hello and an exchange, as a node times them.
                    for nbytes in (HELLO_BYTES, EXCHANGE_BYTES):
                        tables[a].measured(f"n{b:03d}", nbytes, nbytes / bandwidth[i, j])
                # Each side learns what the other advertises (hello / TXT).
                for a, b in ((i, j), (j, i)):
                    capacity = tables[b].capacity()
                    if capacity:
                        tables[a].advertised(f"n{b:03d}", capacity)
                chosen.append(float(bandwidth[i, j]))
                staleness.contact(i, j, round_)
                break
        staleness.close_round(round_)
    return {
        "mean_link_mbit_s": float(np.mean(chosen)) / MBIT,
        "exchanges_per_round": len(chosen) / rounds,
        "worst_staleness_rounds": staleness.worst,
    }


def run_oracle(bandwidth: np.ndarray, rounds: int, t_thres: int) -> dict[str, Any]:
    oracle = OracleMatching(t_thres=t_thres)
    chosen: list[float] = []
    staleness = Staleness(bandwidth.shape[0])
    for round_ in range(1, rounds + 1):
        for i, j in oracle.match(bandwidth):
            chosen.append(float(bandwidth[i, j]))
            staleness.contact(i, j, round_)
        staleness.close_round(round_)
    return {
        "mean_link_mbit_s": float(np.mean(chosen)) / MBIT,
        "exchanges_per_round": len(chosen) / rounds,
        "worst_staleness_rounds": staleness.worst,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--max-staleness", type=int, default=None, help="default: 3 x peers")
    parser.add_argument("--t-thres", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only shows the bench works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.peers, args.rounds = 16, 100
    max_staleness = args.max_staleness or 3 * args.peers
    bandwidth = tiers(args.peers, np.random.default_rng(args.seed))
    rows = [{"selector": "oracle-matching", **run_oracle(bandwidth, args.rounds, args.t_thres)}]
    for selector in (
        Uniform(),
        BandwidthAware(max_staleness=max_staleness, fit=0.0),
        BandwidthAware(max_staleness=max_staleness),
    ):
        label = selector.name
        if isinstance(selector, BandwidthAware):
            label += f" (fit {selector.fit:g})"
        rows.append(
            {"selector": label, **run_decentralized(selector, bandwidth, args.rounds, args.seed)}
        )
    oracle = rows[0]["mean_link_mbit_s"]
    for row in rows:
        row["vs_oracle"] = row["mean_link_mbit_s"] / oracle
    write_json(args.json, rows)
    print_table(
        f"{args.peers} peers, tiers 1/10/100 Mbit/s, {args.rounds} rounds, "
        f"max_staleness {max_staleness}",
        rows,
        [
            "selector",
            "mean_link_mbit_s",
            "vs_oracle",
            "worst_staleness_rounds",
            "exchanges_per_round",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
