"""Soak: do daemons hold steady over a long run? (docs/reliability.md)

Two parts, each sampled at fixed intervals after a warm-up:

- **real**: ``--peers`` ``gossipfl run`` daemons on 127.0.0.1, the demo's
  swarm (``digits-mlp``, Dirichlet(0.5) shards, mDNS), for ``--minutes``.
  Every ``--every`` seconds each daemon's resident memory, open file
  descriptors and threads (from /proc) and its trio tasks and dialled
  channels (from ``gossipfl status``) are read.
- **simnet**: one process simulating ``--sim-peers`` nodes for
  ``--sim-seconds`` of virtual time, with a tenth of the swarm crashing and
  another tenth leaving every minute, and both coming back (from their
  checkpoints, or fresh) half a minute later.  At every tick: the
  process's resident memory and the run's trio tasks per running node.

For each, the table gives memory right after the warm-up and at the end,
the growth between them and its trend per hour (a least-squares line
through every sample after the warm-up), the range of descriptors and
tasks, and every warning or error the run logged, by event.

    python bench/soak.py [--minutes 20] [--peers 4] [--sim-seconds 3600] [--json FILE]
    python bench/soak.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trio
from _proc import proc_stats
from _table import print_table, write_json

from gossipfl.node.demo import DEMO_GOSSIP, DEMO_TRAINER_OPTIONS, LocalSwarm
from gossipfl.node.engine import tasks_under
from simnet.scenario import BUILT_IN, Event, Scenario
from simnet.simulate import SimulationSpec, Tick, run_simulation


@dataclass(frozen=True)
class Sample:
    at_s: float  # since the start of the part
    rss_mb: float | None
    fds: int | None = None
    threads: int | None = None
    tasks: int | None = None
    channels: int | None = None
    merges: int | None = None
    accuracy: float | None = None


def trend_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, value)`` points, per hour."""
    if len(points) < 3:
        return None
    xs, ys = zip(*points, strict=True)
    return 3600 * statistics.linear_regression(xs, ys).slope


@dataclass
class Series:
    """One process's samples, and what they say after the warm-up."""

    name: str
    warmup_s: float
    samples: list[Sample] = field(default_factory=list)

    def settled(self) -> list[Sample]:
        return [s for s in self.samples if s.at_s >= self.warmup_s and s.rss_mb is not None]

    def row(self) -> dict[str, Any]:
        after = self.settled()
        row: dict[str, Any] = {"process": self.name, "samples": len(after)}
        if len(after) < 2:
            return row
        # Three samples at each end: one sample's noise is not a trend.
        start = statistics.median(s.rss_mb for s in after[:3] if s.rss_mb is not None)
        end = statistics.median(s.rss_mb for s in after[-3:] if s.rss_mb is not None)
        row.update(
            rss_start_mb=start,
            rss_end_mb=end,
            rss_max_mb=max(s.rss_mb for s in after if s.rss_mb is not None),
            growth_pct=100 * (end - start) / start,
            trend_pct_per_h=_pct(trend_per_hour([(s.at_s, s.rss_mb or 0) for s in after]), start),
            minutes=(after[-1].at_s - after[0].at_s) / 60,
        )
        for name in ("fds", "threads", "tasks", "channels"):
            values = [getattr(s, name) for s in after if getattr(s, name) is not None]
            if values:
                low, high = min(values), max(values)
                row[name] = f"{low}-{high}" if low != high else low
                row[f"{name}_end"] = values[-1]
        merges = [s.merges for s in after if s.merges is not None]
        if merges:
            row["merges"] = merges[-1]
        accuracies = [s.accuracy for s in after if s.accuracy is not None]
        if accuracies:
            row["accuracy"] = accuracies[-1]
        return row


def _pct(value: float | None, of: float) -> float | None:
    return None if value is None else 100 * value / of


# -- real daemons -------------------------------------------------------------------------


def soak_daemons(
    peers: int, seconds: float, every_s: float, warmup_s: float, root: Path
) -> tuple[list[Series], list[int | None], Counter[str]]:
    swarm = LocalSwarm.create(
        root, peers, trainer_options=DEMO_TRAINER_OPTIONS, gossip=dict(DEMO_GOSSIP)
    )
    series = [Series(f"daemon {i}", warmup_s) for i in range(peers)]
    codes: list[int | None] = [None] * peers
    try:
        swarm.start()
        began = time.monotonic()
        next_report = began
        while (now := time.monotonic()) - began < seconds:
            for i, one in enumerate(series):
                one.samples.append(_daemon_sample(swarm, i, now - began))
            dead = swarm.first_dead()
            if dead is not None:
                tail = "\n".join(dead.log_tail)
                raise SystemExit(f"{dead.node} exited with {dead.code}:\n{tail}")
            if now >= next_report:
                rss = [s.samples[-1].rss_mb for s in series]
                shown = " ".join("-" if r is None else f"{r:.0f}" for r in rss)
                print(f"  {(now - began) / 60:5.1f} min  RSS MB: {shown}", flush=True)
                next_report += max(60.0, every_s)
            time.sleep(max(0.0, began + len(series[0].samples) * every_s - time.monotonic()))
    finally:
        codes = swarm.stop()
    return series, codes, _logged(swarm, peers)


def _daemon_sample(swarm: LocalSwarm, i: int, at_s: float) -> Sample:
    process = swarm.processes[i]
    if process is None:
        return Sample(at_s, None)
    fds, rss, threads, _ = proc_stats(process.pid)
    status = swarm.status(i)
    if status is None:
        return Sample(at_s, rss, fds, threads)
    counters, runtime = status["counters"], status.get("runtime", {})
    return Sample(
        at_s,
        rss,
        fds,
        threads,
        runtime.get("tasks"),
        runtime.get("dialled_channels"),
        counters["exchanges"] + counters["responded"],
        status["metrics"].get("accuracy"),
    )


def _logged(swarm: LocalSwarm, peers: int) -> Counter[str]:
    """Warnings and errors the daemons logged, as ``level event``."""
    counts: Counter[str] = Counter()
    for i in range(peers):
        with open(swarm.log_path(i), "rb") as log:
            for raw in log:
                with contextlib.suppress(ValueError):
                    entry = json.loads(raw)
                    if entry.get("level") in ("warning", "error", "critical"):
                        counts[f"{entry['level']} {entry.get('event', '?')}"] += 1
    return counts


# -- simnet -------------------------------------------------------------------------------


def churning(seconds: float, every_s: float = 60.0) -> Scenario:
    """The ``churn`` scenario's links, with its events repeated for
    ``seconds``: every ``every_s`` a tenth of the swarm crashes and
    another tenth leaves; half a ``every_s`` later the crashed come back
    from their checkpoints and the others fresh."""
    events = []
    at = every_s / 4
    while at + every_s / 2 < seconds:
        events += [
            Event(at, "crash", share=0.1),
            Event(at + 1, "leave", share=0.1),
            Event(at + every_s / 2, "rejoin"),
            Event(at + every_s / 2 + 1, "rejoin", fresh=True),
        ]
        at += every_s
    base = BUILT_IN["churn"]
    return Scenario(
        "soak-churn",
        base.tiers,
        duration_s=seconds,
        events=tuple(events),
        step_cost_s=base.step_cost_s,
    )


def soak_simnet(
    peers: int, seconds: float, tick_s: float, tls: bool
) -> tuple[Series, Counter[str]]:
    series = Series(f"simnet, {peers} nodes, TLS {'on' if tls else 'off'}", seconds / 10)
    started = time.monotonic()

    def on_tick(tick: Tick) -> None:
        _, rss, threads, _ = proc_stats(os.getpid())
        tasks = tasks_under(trio.lowlevel.current_root_task())
        per_node = round(tasks / tick.running) if tick.running else None
        series.samples.append(Sample(tick.virtual_time_s, rss, None, threads, per_node))
        if len(series.samples) % 10 == 0:
            print(
                f"  {tick.virtual_time_s:6.0f} virtual s ({time.monotonic() - started:4.0f} s wall)"
                f"  RSS {rss or 0:.0f} MB  tasks/node {per_node}  running {tick.running}",
                flush=True,
            )

    spec = SimulationSpec(
        churning(seconds), peers=peers, duration_s=seconds, eval_every_s=tick_s, tls=tls
    )
    result = run_simulation(spec, on_tick=on_tick)
    logged = Counter({f"simnet {k}": v for k, v in result.log_counts.items()})
    return series, logged


# -- report -------------------------------------------------------------------------------

COLUMNS = [
    "process",
    "minutes",
    "samples",
    "rss_start_mb",
    "rss_end_mb",
    "rss_max_mb",
    "growth_pct",
    "trend_pct_per_h",
    "fds",
    "threads",
    "tasks",
    "channels",
    "merges",
    "accuracy",
]


@contextlib.contextmanager
def _root(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="gfl-soak-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="real daemons' run")
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds not judged")
    parser.add_argument("--sim-peers", type=int, default=50)
    parser.add_argument("--sim-seconds", type=float, default=3600.0, help="virtual seconds")
    parser.add_argument("--sim-no-tls", action="store_true", help="simnet without TLS")
    parser.add_argument("--skip", choices=("real", "simnet"), help="run only the other part")
    parser.add_argument("--keep", type=Path, help="keep the daemons' state and logs here")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--quick", action="store_true", help="a short run: the bench works")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.every, args.warmup = 0.25, 1.0, 3.0
        args.sim_peers, args.sim_seconds = 10, 240.0
    rows: list[dict[str, Any]] = []
    logged: Counter[str] = Counter()
    if args.skip != "real":
        print(f"real: {args.peers} daemons for {args.minutes:g} min", flush=True)
        with _root(args.keep) as root:
            series, codes, real_logged = soak_daemons(
                args.peers, args.minutes * 60, args.every, args.warmup, root
            )
        for one, code in zip(series, codes, strict=True):
            rows.append({**one.row(), "exit_code": code})
        logged += real_logged
    if args.skip != "simnet":
        print(f"simnet: {args.sim_peers} nodes for {args.sim_seconds:g} virtual s", flush=True)
        sim, sim_logged = soak_simnet(
            args.sim_peers, args.sim_seconds, args.sim_seconds / 120, not args.sim_no_tls
        )
        rows.append(sim.row())
        logged += sim_logged
    write_json(args.json, [*rows, {"logged": dict(logged)}])
    print_table(
        "soak: memory after warm-up and at the end, descriptors, threads, trio tasks "
        "(simnet: per running node) and dialled channels over the run",
        rows,
        COLUMNS,
    )
    print("warnings and errors logged:", dict(logged.most_common()) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
