"""Reliability on real hosts: how long a host takes to rejoin, and where its
accuracy stands before and after (docs/reliability.md).

Runs the scenarios of tests/test_host_scenarios.py once, on one bed of
real ``gossipfl run`` daemons in network namespaces (simnet/hosts.py; root
and iproute2): six ``digits-logreg`` hosts on 2, 10 and 50 Mbit/s links,
mDNS off, host 0's address as every node's only seed.  Host 5 starts 30 s
after the others; then hosts 1 and 4 are killed with ``kill -9`` (15 s
after a checkpoint, halfway to the next), left down 5 s and started again; then host 2 is
unplugged for 20 s.  Times are wall-clock seconds from the daemon's start
(or the heal) and are read from ``gossipfl status`` every 0.5 s, so they
hold the poll interval; accuracies are the daemons' own evaluations (every
2 s) on the shared test set.  At the end every daemon stops at once and
each final model is compared with its trainer alone for as many steps.

    python bench/hosts_reliability.py [--quick] [--json FILE]

``--quick``: four hosts and shorter outages, to show the bench runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _table import print_table, write_json

from simnet.host_scenarios import Observations, Plan, run_scenarios
from simnet.hosts import missing_tools

QUICK = Plan(
    links=(2, 10, 50, 10),
    late=3,
    killed=(1,),
    cut=2,
    late_start_s=10,
    since_checkpoint_s=5,
    down_s=2,
    cut_s=8,
)
EVENT_COLUMNS = (
    "case",
    "host",
    "Mbit/s",
    "away_s",
    "answers_s",
    "exchange_s",
    "acc_before",
    "acc_back",
    "within_2pt_s",
    "acc_then",
    "target_then",
    "rounds_lost",
)
HOST_COLUMNS = ("host", "Mbit/s", "steps", "acc_gossip", "acc_alone")


def event_rows(seen: Observations) -> list[dict[str, Any]]:
    rows = []
    for event in seen.events:
        target = f"{event.target} {event.others:.3f}" if event.others is not None else None
        if event.what == "kill -9, restart" and event.before is not None:
            target = f"{event.target} {event.before:.3f}"
        rows.append(
            {
                "case": event.what,
                "host": event.host,
                "Mbit/s": event.mbit,
                "away_s": event.away_s,
                "answers_s": event.answers_s,
                "exchange_s": event.back_s,
                "acc_before": event.before,
                "acc_back": event.right_after,
                "within_2pt_s": event.caught_up_s,
                "acc_then": event.caught_up,
                "target_then": target,
                "rounds_lost": event.rounds_lost,
                "logged": sorted({e for e in event.log_events if e != "evaluated"}),
            }
        )
    return rows


def host_rows(seen: Observations) -> list[dict[str, Any]]:
    return [
        {
            "host": i,
            "Mbit/s": seen.plan.links[i],
            "steps": seen.steps[i],
            "acc_gossip": seen.gossip[i],
            "acc_alone": seen.alone[i],
        }
        for i in range(seen.plan.hosts)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--quick", action="store_true", help="a small run that shows it works")
    parser.add_argument("--keep", metavar="DIR", help="keep configs and logs in DIR")
    args = parser.parse_args(argv)
    reason = missing_tools()
    if reason is not None:
        print_table(f"host bed unavailable: {reason}", [], EVENT_COLUMNS)
        write_json(args.json, [])
        return 0
    plan = QUICK if args.quick else Plan()
    if args.keep:
        seen = run_scenarios(Path(args.keep), plan)
    else:
        with tempfile.TemporaryDirectory(prefix="gfl-reliability-") as root:
            seen = run_scenarios(Path(root), plan)
    events, hosts = event_rows(seen), host_rows(seen)
    title = (
        f"{plan.hosts} hosts, one seed, no mDNS: rejoin after each case "
        f"(all known {seen.everyone_known_s:.1f} s after start; run {seen.wall_s:.0f} s)"
        if seen.everyone_known_s is not None
        else f"{plan.hosts} hosts: the hosts never all knew each other"
    )
    print_table(title, events, EVENT_COLUMNS)
    print_table(
        "final models (all stopped at once) against each trainer alone", hosts, HOST_COLUMNS
    )
    write_json(
        args.json, [{"kind": "event", **r} for r in events] + [{"kind": "host", **r} for r in hosts]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
