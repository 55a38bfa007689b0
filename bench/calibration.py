"""Calibration: does simnet time a transfer as a real shaped link does?
(docs/results.md)

The same transfers on the host bed (simnet/hosts.py: network namespaces,
``tc ... tbf``; root and iproute2) and in simnet (simnet/links.py, virtual
time): host 0 sends SIZE bytes over TCP to 1 + N other hosts at once (N
competing transfers on its uplink), each receiver answers one byte, and
the row's time is that of the last answer, counted from the common start
(``real_s``, ``simnet_s``; the means over the transfers are shown too:
TCP flows sharing a queue do not finish together, simnet's do).  Host 0's
uplink is shaped to each rate in turn; the receivers' links are far
faster, so host 0's uplink is the bottleneck.  simnet gets the same rates,
the bed's least measured round trip as latency, and tbf's peak bucket (one frame
and room) as the burst an idle link passes at once.  Real times are medians of
``--repeat`` runs.

    sudo python bench/calibration.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trio
from _table import print_table, write_json

from simnet.clock import EventClock
from simnet.hosts import (
    HOST_DEVICE,
    PEAK_BUCKET_BYTES,
    HostBed,
    Link,
    missing_tools,
    tbf_command,
)
from simnet.links import EmulatedWire, Fabric, HostLink
from simnet.scenario import MBIT

HELPER = Path(__file__).resolve().parent / "_transfer.py"
PORT = 9100
FAST_MBIT = 1000.0  # every link but host 0's uplink
SIZES = (10_000, 100_000, 1_000_000, 20_000_000)
RATES = (2.0, 10.0, 50.0)
COMPETING = (0, 1, 3)
MAX_REAL_S = 20.0  # rows whose transfers would take longer are left out


def rows_to_run(quick: bool) -> list[tuple[int, float, int]]:
    if quick:
        return [(100_000, 10.0, 0), (100_000, 10.0, 1)]
    return [
        (size, rate, competing)
        for rate in RATES
        for size in SIZES
        for competing in COMPETING
        if size * (1 + competing) / (rate * MBIT) <= MAX_REAL_S
    ]


# -- simnet -------------------------------------------------------------------------------


def simulated(size: int, rate_mbit: float, competing: int, one_way_s: float) -> list[float]:
    """Virtual seconds each of ``1 + competing`` concurrent transfers takes,
    from the common start to the receiver's one-byte answer."""
    receivers = [f"h{i}" for i in range(1, competing + 2)]
    # tbf lets an idle link pass its peak bucket at once: one frame and room.
    sender = HostLink(rate_mbit * MBIT, FAST_MBIT * MBIT, one_way_s / 2, PEAK_BUCKET_BYTES)
    hosts = {"h0": sender}
    hosts |= {r: HostLink(FAST_MBIT * MBIT, FAST_MBIT * MBIT, one_way_s / 2) for r in receivers}
    wire = EmulatedWire(Fabric(hosts))
    times: list[float] = []

    async def one(receiver: str) -> None:
        ours, theirs = wire.stream_pair("h0", receiver)
        began = trio.current_time()

        async def answer() -> None:
            got = 0
            while got < size:
                got += len(await theirs.receive_some(1 << 20))
            await theirs.send_all(b"!")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer)
            await ours.send_all(bytes(size))
            await ours.receive_some(1)
        times.append(trio.current_time() - began)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for receiver in receivers:
                nursery.start_soon(one, receiver)

    trio.run(main, clock=EventClock())
    return times


# -- the bed ------------------------------------------------------------------------------


@contextmanager
def servers(bed: HostBed, count: int) -> Iterator[None]:
    started = []
    try:
        for host in bed.plan.hosts[1 : count + 1]:
            process = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.netns,
                    sys.executable,
                    str(HELPER),
                    "serve",
                    str(PORT),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            started.append(process)
            assert process.stdout is not None
            process.stdout.readline()  # "ready"
        yield
    finally:
        for process in started:
            process.kill()
            process.wait()


def measured(bed: HostBed, size: int, rate_mbit: float, competing: int, repeat: int) -> Any:
    sender = bed.plan.hosts[0]
    subprocess.run(tbf_command(sender.netns, HOST_DEVICE, rate_mbit), check=True)
    targets = [h.ip for h in bed.plan.hosts[1 : competing + 2]]
    command = ["ip", "netns", "exec", sender.netns, sys.executable, str(HELPER)]
    done = subprocess.run(
        [*command, "send", str(PORT), str(size), str(repeat), *targets],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(done.stdout)


def calibrate(quick: bool, repeat: int) -> list[dict[str, Any]]:
    rows = []
    plan = rows_to_run(quick)
    most = max(c for _, _, c in plan) + 1
    links = [Link(RATES[0], FAST_MBIT)] + [Link.symmetric(FAST_MBIT)] * most
    with HostBed(links) as bed, servers(bed, most):
        for size, rate, competing in plan:
            real = measured(bed, size, rate, competing, repeat)
            rtt = min(real["rtt_s"])  # the rest of a ping's time is scheduling
            lasts = [max(run) for run in real["runs"]]
            real_s = statistics.median(lasts)
            sim = simulated(size, rate, competing, rtt / 2)
            row = {
                "size_kB": size / 1000,
                "Mbit/s": rate,
                "competing": competing,
                "rtt_ms": rtt * 1000,
                "ideal_s": size * (1 + competing) / (rate * MBIT) + rtt,
                "real_s": real_s,
                "real_spread": (max(lasts) - min(lasts)) / real_s,
                "simnet_s": max(sim),
                "simnet/real": max(sim) / real_s,
                "real_mean_s": statistics.median(statistics.fmean(run) for run in real["runs"]),
                "simnet_mean_s": statistics.fmean(sim),
            }
            rows.append(row)
            print(
                f"  {size / 1000:>8g} kB {rate:4g} Mbit/s +{competing}: real {real_s:.4f} s, "
                f"simnet {max(sim):.4f} s ({max(sim) / real_s:.3f})",
                flush=True,
            )
    return rows


COLUMNS = [
    "size_kB",
    "Mbit/s",
    "competing",
    "rtt_ms",
    "ideal_s",
    "real_s",
    "real_spread",
    "simnet_s",
    "simnet/real",
    "real_mean_s",
    "simnet_mean_s",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--quick", action="store_true", help="two rows: the bench works")
    args = parser.parse_args(argv)
    reason = missing_tools()
    if reason is not None:
        print(f"calibration needs the host bed: {reason}", file=sys.stderr)
        return 1
    started = time.monotonic()
    rows = calibrate(args.quick, 2 if args.quick else args.repeat)
    write_json(args.json, rows)
    worst = max(abs(r["simnet/real"] - 1) for r in rows)
    print_table(
        f"one uplink shaped by tbf vs simnet: time until 1 + N concurrent transfers are done "
        f"(worst row {100 * worst:.1f}% off; {time.monotonic() - started:.0f} s)",
        rows,
        COLUMNS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
