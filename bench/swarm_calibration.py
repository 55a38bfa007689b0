"""The same six-host swarm for real and in simnet, side by side
(docs/results.md, "Calibration").

Real: six ``gossipfl run`` daemons on the host bed (simnet/hosts.py;
root and iproute2), default configs apart from the ``[swarm]`` paths and
the trainer (``digits-logreg``, Dirichlet(0.5) shards), links of 2, 10 and
50 Mbit/s, mDNS across the bridge.  simnet: the same nodes, shards,
initial model, links (with tbf's one-frame burst) and config in virtual
time, each local step charged the trainer's own cost, timed here once.
Both run ``--duration`` seconds from the moment every daemon answers; the
real swarm's accuracy is read from ``gossipfl status`` every second.

Prints the mean accuracy at a few instants and the exchanges of every
pair, and with ``--figure`` draws accuracy over time and exchanges per
pair, real next to simnet.

    sudo python bench/swarm_calibration.py [--duration 60] [--figure FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trio
from _table import print_table, write_json

from simnet.clock import EventClock
from simnet.determinism import seeded_scheduler
from simnet.hosts import PEAK_BUCKET_BYTES, HostBed, Link, missing_tools
from simnet.rounds import node_trainer
from simnet.scenario import MBIT, Scenario, Tier
from simnet.simulate import Simulation, SimulationSpec, counted_logs
from simnet.swarm import make_identities

TRAINER = "digits-logreg"
OPTIONS: dict[str, Any] = {"partition": "dirichlet", "alpha": 0.5}
TIERS_MBIT = (2.0, 10.0, 50.0)
PEERS = 6
SEED = 0
INSTANTS = (5, 10, 20, 30, 60)


def step_cost_s(repeat: int = 2000) -> float:
    """What one local step of the trainer costs on this machine."""
    trainer = node_trainer(TRAINER, OPTIONS, SEED, 0, PEERS)
    trainer.train(50)  # warm
    began = time.perf_counter()
    trainer.train(repeat)
    return (time.perf_counter() - began) / repeat


def scenario(step_s: float, one_way_s: float) -> Scenario:
    latency = (one_way_s * 1000, one_way_s * 1000)
    tiers = tuple(Tier(1 / len(TIERS_MBIT), m, m, latency) for m in TIERS_MBIT)
    return Scenario("bed", tiers, peers=PEERS, step_cost_s=step_s)


def simulate(spec: SimulationSpec) -> tuple[list[tuple[float, float]], dict[tuple[int, int], int]]:
    """Mean accuracy over virtual time, and exchanges per pair."""
    with tempfile.TemporaryDirectory() as tmp:
        identities = make_identities(Path(tmp), spec.size, spec.seed)
        simulation = Simulation(spec, identities)
        # The bed's tbf lets an idle link pass its peak bucket at once.
        for host, link in list(simulation.fabric.hosts.items()):
            simulation.fabric.hosts[host] = dataclasses.replace(link, burst_bytes=PEAK_BUCKET_BYTES)
        with counted_logs(None), seeded_scheduler(spec.seed):
            trio.run(simulation.run, clock=EventClock())
    curve = [(t.virtual_time_s, t.mean_accuracy) for t in simulation.ticks]
    index = {m.identity.node_id: m.index for m in simulation.members}
    pairs: dict[tuple[int, int], int] = {}
    for member in simulation.members:
        for node in member.instances:
            for peer in node.table.all():
                j = index.get(peer.node_id)
                if j is not None:
                    key = (min(member.index, j), max(member.index, j))
                    pairs[key] = max(pairs.get(key, 0), peer.exchanges)
    return curve, pairs


def real(
    links_mbit: list[float], duration_s: float
) -> tuple[list[tuple[float, float]], dict[tuple[int, int], int], float]:
    """Mean accuracy over wall time, exchanges per pair, and the bed's
    median round trip (s), from the daemons' own link estimates."""

    def overrides(i: int) -> dict[str, dict[str, Any]]:
        shard = {**OPTIONS, "node_index": i, "num_nodes": PEERS}
        return {"trainer": {"name": TRAINER, **shard}, "gossip": {"evaluate_every_s": 1.0}}

    with HostBed([Link.symmetric(m) for m in links_mbit], overrides=overrides) as bed:
        bed.start()
        while not all(bed.status(i) for i in range(PEERS)):
            bed.check_alive()
            time.sleep(0.2)
        began = time.monotonic()
        curve = []
        statuses: list[dict[str, Any] | None] = []
        while (now := time.monotonic() - began) <= duration_s:
            statuses = [bed.status(i) for i in range(PEERS)]
            accuracies = [s["metrics"].get("accuracy") for s in statuses if s is not None]
            known = [a for a in accuracies if a is not None]
            if len(known) == PEERS:
                curve.append((now, statistics.fmean(known)))
            time.sleep(max(0.0, began + len(curve) + 1 - time.monotonic()))
        index = {node_id: i for i, node_id in enumerate(bed.node_ids)}
        pairs: dict[tuple[int, int], int] = {}
        rtts = []
        for i, status in enumerate(statuses):
            for peer in [] if status is None else status["peers"]:
                j = index.get(peer["node_id"])
                if j is not None:
                    key = (min(i, j), max(i, j))
                    pairs[key] = max(pairs.get(key, 0), peer["exchanges"])
                if peer["rtt_s"] is not None:
                    rtts.append(peer["rtt_s"])
        bed.stop_all()
    return curve, pairs, statistics.median(rtts) if rtts else 0.0


def at(curve: list[tuple[float, float]], instant: float) -> float | None:
    """The curve's last value at or before ``instant``."""
    before = [v for t, v in curve if t <= instant + 1e-9]
    return before[-1] if before else None


def figure(path: Path, runs: dict[str, Any], links: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, style in (("real", "-"), ("simnet", "--")):
        times, values = zip(*runs[name]["curve"], strict=True)
        left.plot(times, values, style, label=name)
    left.set(xlabel="seconds", ylabel="mean accuracy of 6 nodes", title="accuracy over time")
    left.legend()
    pairs = sorted(itertools.combinations(range(PEERS), 2))
    labels = [f"{i}-{j}\n{min(links[i], links[j]):g}" for i, j in pairs]
    x = range(len(pairs))
    width = 0.4
    right.bar([p - width / 2 for p in x], [runs["real"]["pairs"].get(p, 0) for p in pairs], width)
    right.bar([p + width / 2 for p in x], [runs["simnet"]["pairs"].get(p, 0) for p in pairs], width)
    right.set_xticks(list(x), labels, fontsize=7)
    right.set(xlabel="pair (bottleneck Mbit/s)", ylabel="exchanges", title="exchanges per pair")
    right.legend(["real", "simnet"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of each run")
    parser.add_argument("--figure", type=Path, help="write the side-by-side figure here")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--quick", action="store_true", help="a short run: the bench works")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 8.0
    reason = missing_tools()
    if reason is not None:
        print(f"swarm calibration needs the host bed: {reason}", file=sys.stderr)
        return 1
    step_s = step_cost_s()
    # simnet's draw decides which node gets which tier; the bed follows it.
    base = scenario(step_s, 0.0)
    links = [link.uplink / MBIT for link, _ in base.hosts(PEERS, SEED)]
    print(f"links {links} Mbit/s; a local step costs {step_s * 1e3:.3f} ms", flush=True)
    real_curve, real_pairs, rtt = real(links, args.duration)
    spec = SimulationSpec(
        scenario(step_s, rtt / 4),
        trainer=TRAINER,
        trainer_options=OPTIONS,
        duration_s=args.duration,
        seed=SEED,
        eval_every_s=1.0,
    )
    sim_curve, sim_pairs = simulate(spec)
    runs: dict[str, dict[str, Any]] = {
        "real": {"curve": real_curve, "pairs": real_pairs},
        "simnet": {"curve": sim_curve, "pairs": sim_pairs},
    }
    accuracy_rows: list[dict[str, Any]] = [
        {"case": f"mean accuracy at {t:g} s", "real": at(real_curve, t), "simnet": at(sim_curve, t)}
        for t in INSTANTS
        if t <= args.duration
    ]
    pair_rows: list[dict[str, Any]] = [
        {
            "case": f"exchanges {i}-{j}",
            "Mbit/s": min(links[i], links[j]),
            "real": real_pairs.get((i, j), 0),
            "simnet": sim_pairs.get((i, j), 0),
        }
        for i, j in itertools.combinations(range(PEERS), 2)
    ]
    total: dict[str, Any] = {
        "case": "exchanges, all pairs",
        "real": sum(real_pairs.values()),
        "simnet": sum(sim_pairs.values()),
    }
    rows = [*accuracy_rows, *pair_rows, total]
    for row in rows:
        if isinstance(row.get("real"), (int, float)) and row["real"]:
            row["simnet/real"] = (row["simnet"] or 0) / row["real"]
    curves = {
        name: {
            "curve": run["curve"],
            "pairs": {f"{i}-{j}": n for (i, j), n in run["pairs"].items()},
        }
        for name, run in runs.items()
    }
    write_json(args.json, [*rows, {"links": links, "step_cost_s": step_s, "rtt_s": rtt, **curves}])
    if args.figure:
        figure(args.figure, runs, links)
    print_table(
        f"6 hosts for real and in simnet, {args.duration:g} s each "
        f"(step {step_s * 1e3:.3f} ms, bed round trip {rtt * 1e3:.2f} ms)",
        rows,
        ["case", "Mbit/s", "real", "simnet", "simnet/real"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
