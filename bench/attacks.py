"""Real daemons under attack: do honest nodes keep learning?

Starts 4 honest ``gossipfl run`` daemons on 127.0.0.1 (digits-mlp,
Dirichlet(0.5) shards, the demo's gossip settings), lets them learn, then
runs each attack in turn, from this process's own trio loop, in three
phases of ``--phase`` seconds: before (no attack), during, after.  Per
honest daemon and phase it records merges (exchanges either way, from
``gossipfl status``) per second, accuracy (the daemon's own evaluations),
open file descriptors and RSS (``/proc``), CPU time, and whether its pid
stayed the same (no crash, no restart).

Attack classes (see bench/_attackers.py):

- values: a member (its own certificate from the swarm CA) offers every
  daemon exchanges of 1e30, +-3.4e38 and NaN, and answers with them when
  dialled; the same while one daemon is ``kill -9``'d and restarted (it
  must come back from its checkpoint with a finite model and its accuracy);
- mDNS, no certificate: every node id announced at a black hole; goodbyes
  for every real record, again and again; hundreds of fake peers at a
  black hole, more every few seconds;
- fairness: a member that takes exchanges and never commits, back to back;
  one that greets and never replies; one that answers every other
  exchange; a model-request flood; garbage TCP from one address;
  connections that hold handshake slots, from 200 addresses;
- faults: a member holding as many connections as a daemon admits; silent
  connections and members' connections against a daemon whose descriptor
  limit is 64.

The fake-peer flood runs last: its records outlive it in every table.

A row passes when the honest daemons together keep at least half their
merge rate during the attack and 90% after, none loses more than 2 points
of accuracy, and none crashes or restarts (the restarted daemon of its
own row aside).  The least share any one daemon kept is in the table too;
the first row, no attack at all, shows how far that wanders by itself.
The attacker's own CPU share (of one core) is in the table: the machine
is small, so an attacker that costs CPU takes it from the daemons.

    python bench/attacks.py [--phase 30] [--only NAME ...] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import structlog
import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _attackers import (
    Behaviour,
    MdnsOutsider,
    Member,
    Tally,
    Target,
    answers_one_in_two,
    fake_peers,
    garbage_flood,
    greets_never_replies,
    hoard_connections,
    hold_handshakes,
    offer_poison,
    poison_replies,
    pull_flood,
    source_addresses,
    spoof_addresses,
    stall_commits,
    tarpit,
    withdraw_peers,
)
from _proc import ProcStats, proc_stats
from _table import print_table, write_json

from gossipfl.node.checkpoint import read_params
from gossipfl.node.config import load_config
from gossipfl.node.demo import DEMO_GOSSIP, DEMO_TRAINER_OPTIONS, LocalSwarm
from gossipfl.node.model import model_hash
from gossipfl.node.run import build_trainer
from gossipfl.node.state import read_status
from gossipfl.plugins import load_compressor, wire_name
from gossipfl.protocol import Hello
from gossipfl.transport import NodeIdentity
from gossipfl.transport.identity import keygen

HONEST: Final = 4
GOSSIP: Final = {**DEMO_GOSSIP, "evaluate_every_s": 1.0, "checkpoint_every_s": 2.0}
MEMBER_HOST: Final = "127.0.0.2"  # a malicious member's device
BLACK_HOLE_HOST: Final = "127.0.0.3"  # where spoofed records point
FD_LIMIT: Final = 64  # the starved daemon's descriptor limit (soft; it uses ~22)
FD_MEMBERS: Final = 4  # members holding connections to it (8 each at most)
# The must-show thresholds.
KEEP_DURING: Final = 0.5
KEEP_AFTER: Final = 0.9
MAX_ACCURACY_LOSS_PT: Final = 2.0


# -- the arena: the swarm and what attackers know of it ------------------------------


@dataclass
class Arena:
    swarm: LocalSwarm
    targets: list[Target]
    service_type: str
    swarm_id: str
    hello: Hello  # what a member of this swarm says (node id replaced per member)
    quick: bool
    pids: list[int]  # each daemon's expected pid: a change is a crash or restart
    restarted: set[int] = field(default_factory=set)  # restarted on purpose in this row
    notes: dict[str, Any] = field(default_factory=dict)  # what a row found besides rates
    _members: int = 0

    def new_member(self) -> Member:
        """A fresh malicious member: its own key and certificate from the
        swarm CA (each row's attacker is a different member, so one row's
        penalties do not carry over to the next)."""
        self._members += 1
        directory = self.swarm.root / f"attacker{self._members}"
        keygen(self.swarm.root / "swarm", directory)
        identity = NodeIdentity.from_dir(directory)
        hello = dataclasses.replace(
            self.hello, node_id=identity.node_id, swarm_id=identity.swarm_id
        )
        return Member(identity, hello, MEMBER_HOST)


def _events(path: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == event:
                found.append(entry)
    return found


def _member_hello(swarm: LocalSwarm) -> Hello:
    """A hello that matches the swarm's (trainer, compressor, model); the
    node id is filled in per member."""
    config = load_config(swarm.configs[0])
    initial = build_trainer(config).get_params()
    return Hello(
        "",
        "",
        config.trainer_name,
        wire_name(load_compressor(config.gossip.compressor)),
        config.gossip.value_dtype,
        initial.size,
        model_hash(initial),
        0,
    )


async def _targets(swarm: LocalSwarm) -> list[Target]:
    """Each daemon's node id and address, once it has started."""
    targets = []
    for i in range(HONEST):
        while not (started := _events(swarm.log_path(i), "node_started")) or not (
            status := swarm.status(i)
        ):
            await trio.sleep(0.5)
        host, port = started[-1]["address"].rsplit(":", 1)
        targets.append(Target(f"node{i}", status["node_id"], host, int(port)))
    return targets


# -- measurement -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float
    pid: int
    alive: bool
    merges: int | None  # exchanges + responded, when the status socket answered
    accuracy: float | None
    fds: int | None
    rss_mb: float | None
    cpu_s: float | None
    # Exchanges with each peer, either way, by node id: how its peers count
    # a daemon's merges when its own status socket cannot answer.
    with_peers: dict[str, int] = field(default_factory=dict)


class Monitor:
    """Samples every daemon every ``every_s`` (status over its control
    socket, in a worker thread; /proc here)."""

    def __init__(self, swarm: LocalSwarm, every_s: float) -> None:
        self.swarm = swarm
        self.every_s = every_s
        self.samples: list[list[Sample]] = [[] for _ in range(HONEST)]

    async def run(self) -> None:
        while True:
            async with trio.open_nursery() as nursery:
                for i in range(HONEST):
                    nursery.start_soon(self._sample, i)
            await trio.sleep(self.every_s)

    async def _sample(self, i: int) -> None:
        process = self.swarm.processes[i]
        if process is None:
            return
        alive = process.poll() is None
        status = await trio.to_thread.run_sync(
            functools.partial(_status_or_none, self.swarm.state_dir(i))
        )
        merges = accuracy = None
        with_peers: dict[str, int] = {}
        if status is not None:
            counters = status["counters"]
            merges = counters["exchanges"] + counters["responded"]
            accuracy = status["metrics"].get("accuracy")
            with_peers = {p["node_id"]: p["exchanges"] for p in status["peers"]}
        fds, rss, _, cpu = proc_stats(process.pid) if alive else ProcStats(None, None, None, None)
        at = trio.current_time()
        sample = Sample(at, process.pid, alive, merges, accuracy, fds, rss, cpu, with_peers)
        self.samples[i].append(sample)

    def seen_by_peers(self, i: int, node_id: str, start: float, end: float) -> float | None:
        """Daemon ``i``'s merges per second as the others counted them (all
        its merges are with them)."""
        rates = []
        for j in range(HONEST):
            if j != i:
                seen = [(s.at, s.with_peers.get(node_id)) for s in self.between(j, start, end)]
                rates.append(_per_second([(at, n) for at, n in seen if n is not None]))
        known = [r for r in rates if r is not None]
        return sum(known) if len(known) == len(rates) else None

    def between(self, i: int, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples[i] if start <= s.at <= end]


def _status_or_none(state_dir: Path) -> dict[str, Any] | None:
    try:
        return read_status(state_dir, timeout_s=2.0)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class PhaseOf:
    """One daemon in one phase."""

    rate: float | None  # merges per second
    accuracy: float | None  # mean of its evaluations
    fds: int | None  # most open at once
    rss_mb: float | None  # largest
    cpu: float | None  # share of one core
    pids: frozenset[int]
    died: bool
    rate_from_peers: bool = False  # ``rate`` as its peers counted it


def _phase_of(samples: list[Sample]) -> PhaseOf:
    pid = samples[-1].pid if samples else 0
    same = [s for s in samples if s.pid == pid]  # a restarted daemon's counters start over
    accuracies = [s.accuracy for s in samples if s.accuracy is not None]
    fds = [s.fds for s in samples if s.fds is not None]
    rss = [s.rss_mb for s in samples if s.rss_mb is not None]
    return PhaseOf(
        _per_second([(s.at, s.merges) for s in same if s.merges is not None]),
        statistics.fmean(accuracies) if accuracies else None,
        max(fds) if fds else None,
        max(rss) if rss else None,
        _per_second([(s.at, s.cpu_s) for s in same if s.cpu_s is not None]),
        frozenset(s.pid for s in samples),
        any(not s.alive for s in samples),
    )


def _per_second(points: list[tuple[float, float]]) -> float | None:
    """How fast a counter grew from its first point to its last."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


# -- the attacks ---------------------------------------------------------------------


Attack = Callable[[Arena, Tally], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    attack: Attack
    what: str


async def _each_target(
    arena: Arena, run: Callable[[Target], Awaitable[None]], targets: list[Target] | None = None
) -> None:
    async with trio.open_nursery() as nursery:
        for target in targets or arena.targets:
            nursery.start_soon(run, target)


async def _serve_and(
    arena: Arena, behaviour: Behaviour, tally: Tally, also: Attack | None = None
) -> None:
    """A fresh member listens (announced over mDNS) with ``behaviour``, and
    runs ``also`` (with the same member's tally) meanwhile."""
    member = arena.new_member()
    async with trio.open_nursery() as nursery:
        await nursery.start(member.serve, behaviour, tally, arena.service_type)
        if also is not None:
            await also(arena, tally)
        await trio.sleep_forever()


async def poison(arena: Arena, tally: Tally) -> None:
    member = arena.new_member()

    async def offers(_: Arena, tally: Tally) -> None:
        await _each_target(arena, lambda t: offer_poison(member, t, tally, pace_s=0.25))

    await _serve_and(arena, poison_replies, tally, offers)


async def poison_and_restart(arena: Arena, tally: Tally) -> None:
    """:func:`poison`, and meanwhile node0 is killed (-9) and restarted."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poison, arena, tally)
        await trio.sleep(arena.notes.pop("kill_after_s"))
        await _kill_and_restart(arena, 0)
        await trio.sleep_forever()


async def _kill_and_restart(arena: Arena, i: int) -> None:
    swarm = arena.swarm
    before = swarm.status(i)
    swarm.signal(i, signal.SIGKILL)
    await trio.to_thread.run_sync(swarm.wait, i)
    params = read_params(swarm.state_dir(i))
    accuracy, _ = await trio.to_thread.run_sync(swarm.evaluate, i)
    arena.restarted.add(i)
    killed, starts = trio.current_time(), len(_events(swarm.log_path(i), "node_started"))
    swarm.start(i)
    process = swarm.processes[i]
    assert process is not None
    arena.pids[i] = process.pid
    while (status := swarm.status(i)) is None or "accuracy" not in status["metrics"]:
        await trio.sleep(0.25)
    # It listens on a new port: the rows after this one attack it there.
    started = _events(swarm.log_path(i), "node_started")
    assert len(started) > starts
    host, port = started[-1]["address"].rsplit(":", 1)
    arena.targets[i] = dataclasses.replace(arena.targets[i], host=host, port=int(port))
    arena.notes.update(
        restarted=f"node{i}",
        accuracy_at_kill=None if before is None else before["metrics"].get("accuracy"),
        checkpoint_finite=bool(np.isfinite(params).all()),
        checkpoint_accuracy=accuracy,
        first_accuracy_after_restart=status["metrics"]["accuracy"],
        back_after_s=trio.current_time() - killed,
        restored_from_checkpoint=bool(_events(swarm.log_path(i), "checkpoint_restored")),
    )


async def spoof(arena: Arena, tally: Tally) -> None:
    async with (
        tarpit(BLACK_HOLE_HOST) as port,
        MdnsOutsider(arena.service_type, arena.swarm_id) as outsider,
    ):
        await spoof_addresses(outsider, arena.targets, (BLACK_HOLE_HOST, port), tally, 1.0)


async def nothing(arena: Arena, tally: Tally) -> None:
    """The control: how far the measure wanders with no attack at all."""
    await trio.sleep_forever()


async def withdraw(arena: Arena, tally: Tally) -> None:
    async with MdnsOutsider(arena.service_type, arena.swarm_id) as outsider:
        await withdraw_peers(outsider, arena.targets, tally, 1.0)


async def fake_flood(arena: Arena, tally: Tally) -> None:
    first, more = (100, 10) if arena.quick else (300, 30)
    async with (
        tarpit(BLACK_HOLE_HOST) as port,
        MdnsOutsider(arena.service_type, arena.swarm_id) as outsider,
    ):
        await fake_peers(outsider, (BLACK_HOLE_HOST, port), tally, first, more, 5.0)


async def stall(arena: Arena, tally: Tally) -> None:
    member = arena.new_member()
    await _each_target(arena, lambda t: stall_commits(member, t, tally, pace_s=0.05))


async def silent(arena: Arena, tally: Tally) -> None:
    await _serve_and(arena, greets_never_replies, tally)


async def one_in_two(arena: Arena, tally: Tally) -> None:
    await _serve_and(arena, answers_one_in_two, tally)


async def pulls(arena: Arena, tally: Tally) -> None:
    member = arena.new_member()
    await _each_target(arena, lambda t: pull_flood(member, t, tally, pace_s=0.05))


async def garbage(arena: Arena, tally: Tally) -> None:
    await _each_target(arena, lambda t: garbage_flood(t, tally, ["127.0.0.5"], per_second=50))


async def handshake_slots(arena: Arena, tally: Tally) -> None:
    sources = source_addresses(1, 200)
    count = 32 if arena.quick else 100
    await _each_target(arena, lambda t: hold_handshakes(t, tally, sources, count, pace_s=0.5))


async def hoard(arena: Arena, tally: Tally) -> None:
    member = arena.new_member()
    sources = source_addresses(10, 32)
    count, pace = (64, 0.01) if arena.quick else (600, 0.02)
    await _each_target(
        arena, lambda t: hoard_connections(member, t, tally, sources, count, pace, retry_s=30.0)
    )


async def starve_descriptors(arena: Arena, tally: Tally) -> None:
    """node3 may hold only :data:`FD_LIMIT` descriptors; outsiders hold
    handshake slots and :data:`FD_MEMBERS` members hold connections, more
    than that in all."""
    victim = HONEST - 1
    process = arena.swarm.processes[victim]
    assert process is not None
    original = resource.prlimit(process.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (FD_LIMIT, original[1]))
    target = arena.targets[victim]
    try:
        async with trio.open_nursery() as nursery:
            outsiders = source_addresses(1, 100)
            nursery.start_soon(hold_handshakes, target, tally, outsiders, 100, 0.5)
            for i in range(FD_MEMBERS):
                member, sources = arena.new_member(), source_addresses(20 + i, 4)
                nursery.start_soon(hoard_connections, member, target, tally, sources, 16, 0.05)
    finally:
        with contextlib.suppress(OSError):
            resource.prlimit(process.pid, resource.RLIMIT_NOFILE, original)


CASES: Final = [
    Case("no attack", "control", nothing, "nothing: the measure's own noise"),
    Case("huge/NaN values", "values", poison, "member offers and replies 1e30, 3.4e38, NaN"),
    Case(
        "values + kill -9",
        "values",
        poison_and_restart,
        "as above; node0 kill -9'd and restarted during it",
    ),
    Case("spoofed addresses", "mDNS", spoof, "every node id announced at a black hole, 1/s"),
    Case("withdrawals", "mDNS", withdraw, "goodbyes for every real record, 1/s"),
    Case("never commits", "fairness", stall, "member takes exchanges, never commits, back to back"),
    Case("never replies", "fairness", silent, "member greets when dialled, never replies"),
    Case("replies 1 in 2", "fairness", one_in_two, "member answers every other exchange"),
    Case("pull flood", "fairness", pulls, "member asks every node for its model 20/s"),
    Case("garbage TCP", "fairness", garbage, "outsider: 50 garbage connections/s per node"),
    Case("handshake slots", "fairness", handshake_slots, "outsider: 100 silent connections/node"),
    Case("connection hoard", "faults", hoard, "member holds idle connections, 600 per node"),
    Case(
        "fd limit",
        "faults",
        starve_descriptors,
        f"node3 at {FD_LIMIT} fds; 100 silent connections, {FD_MEMBERS} members x 16",
    ),
    # Last: fake peers outlive the attack in every table until they fail
    # three times each, and would be a cost to every row after this one.
    Case("fake peers", "mDNS", fake_flood, "300 fake peers at a black hole, +30 every 5 s"),
]


# -- a row: before, during, after -------------------------------------------------------


@dataclass
class Timing:
    phase_s: float
    settle_s: float
    sample_s: float


async def _phase(seconds: float) -> tuple[float, float]:
    start = trio.current_time()
    await trio.sleep(seconds)
    return start, trio.current_time()


async def run_case(case: Case, arena: Arena, monitor: Monitor, timing: Timing) -> dict[str, Any]:
    arena.restarted.clear()
    arena.notes.clear()
    logs = [arena.swarm.log_path(i).stat().st_size for i in range(HONEST)]
    before = await _phase(timing.phase_s)
    tally = Tally()
    cpu_start, during_start = time.process_time(), trio.current_time()
    if case.attack is poison_and_restart:
        arena.notes["kill_after_s"] = timing.phase_s / 3
    async with trio.open_nursery() as nursery:
        nursery.start_soon(case.attack, arena, tally)
        await trio.sleep(timing.phase_s)
        while arena.restarted and "back_after_s" not in arena.notes:
            await trio.sleep(0.25)  # the restarted daemon must be back before "after"
        nursery.cancel_scope.cancel()
    during = (during_start, trio.current_time())
    attacker_cpu = (time.process_time() - cpu_start) / (during[1] - during[0])
    after = await _phase(timing.phase_s)
    row = _row(case, arena, monitor, (before, during, after))
    row.update(
        attack_per_s=tally.actions / (during[1] - during[0]),
        refused=tally.refused,
        attacker_cpu_pct=100 * attacker_cpu,
        **_log_counts(arena.swarm, logs),
        **{k: v for k, v in arena.notes.items() if k != "kill_after_s"},
    )
    row["verdict"] = "-" if arena.quick else _verdict(row)
    await trio.sleep(timing.settle_s)
    return row


def _row(
    case: Case, arena: Arena, monitor: Monitor, phases: tuple[tuple[float, float], ...]
) -> dict[str, Any]:
    per_daemon: list[dict[str, Any]] = []
    for i in range(HONEST):
        before, during, after = (_phase_of(monitor.between(i, *phase)) for phase in phases)
        if during.rate is None:  # its status socket starved (fd limit): ask its peers
            seen = monitor.seen_by_peers(i, arena.targets[i].node_id, *phases[1])
            during = dataclasses.replace(during, rate=seen, rate_from_peers=seen is not None)
        pids = before.pids | during.pids | after.pids
        per_daemon.append(
            {
                "node": f"node{i}",
                "rate_before": before.rate,
                "rate_during": during.rate,
                "rate_after": after.rate,
                "during_rate_from_peers": during.rate_from_peers,
                "during_ratio": _ratio(during.rate, before.rate),
                "after_ratio": _ratio(after.rate, before.rate),
                "accuracy_before": before.accuracy,
                "accuracy_after": after.accuracy,
                "accuracy_change_pt": None
                if before.accuracy is None or after.accuracy is None
                else 100 * (after.accuracy - before.accuracy),
                "fds": [before.fds, during.fds, after.fds],
                "rss_mb": [before.rss_mb, during.rss_mb, after.rss_mb],
                "cpu": [before.cpu, during.cpu, after.cpu],
                "restarted_on_purpose": i in arena.restarted,
                "crashed_or_restarted": i not in arena.restarted
                and (len(pids) > 1 or before.died or during.died or after.died),
            }
        )
    kept = [d for d in per_daemon if not d["restarted_on_purpose"]]
    return {
        "case": case.name,
        "class": case.kind,
        "what": case.what,
        "phase_s": phases[0][1] - phases[0][0],
        "merges_per_s": _mean([d["rate_before"] for d in per_daemon]),
        "during": _kept_share(kept, "rate_during"),
        "after": _kept_share(per_daemon, "rate_after"),
        "least_during": _least([d["during_ratio"] for d in kept]),
        "least_after": _least([d["after_ratio"] for d in per_daemon]),
        "accuracy": _mean([d["accuracy_before"] for d in per_daemon]),
        "accuracy_pt": _least([d["accuracy_change_pt"] for d in per_daemon]),
        "fds_max": max((d["fds"][1] or 0 for d in per_daemon), default=None),
        "rss_mb_max": max((d["rss_mb"][1] or 0.0 for d in per_daemon), default=None),
        "crashes": sum(d["crashed_or_restarted"] for d in per_daemon),
        "daemons": per_daemon,
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def _kept_share(daemons: list[dict[str, Any]], phase: str) -> float | None:
    """The share of their merge rate before the attack that ``daemons``
    kept, together.  One daemon's rate over 30 s wanders by 10% or more
    with no attack at all (see the control row), the swarm's far less."""
    rates = [(d[phase], d["rate_before"]) for d in daemons]
    if not rates or any(r is None or b is None for r, b in rates):
        return None
    return _ratio(sum(r for r, _ in rates), sum(b for _, b in rates))


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _least(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known and len(known) == len(values) else None


def _log_counts(swarm: LocalSwarm, offsets: list[int]) -> dict[str, Any]:
    """Lines the honest daemons logged during the row: how many, how many
    errors, and the most frequent events."""
    lines, errors = 0, 0
    events: dict[str, int] = {}
    for i, offset in enumerate(offsets):
        with open(swarm.log_path(i), "rb") as log:
            log.seek(offset)
            for raw in log:
                lines += 1
                with contextlib.suppress(ValueError):
                    entry = json.loads(raw)
                    errors += entry.get("level") == "error"
                    name = entry.get("event", "?")
                    events[name] = events.get(name, 0) + 1
    top = sorted(events.items(), key=lambda kv: -kv[1])[:6]
    return {"log_lines": lines, "log_errors": errors, "log_events": dict(top)}


def _verdict(row: dict[str, Any]) -> str:
    failed = []
    if row["during"] is None or row["during"] < KEEP_DURING:
        failed.append("during")
    if row["after"] is None or row["after"] < KEEP_AFTER:
        failed.append("after")
    if row["accuracy_pt"] is None or row["accuracy_pt"] < -MAX_ACCURACY_LOSS_PT:
        failed.append("accuracy")
    if row["crashes"]:
        failed.append("crash")
    if "checkpoint_finite" in row and not (
        row["checkpoint_finite"] and row["restored_from_checkpoint"]
    ):
        failed.append("restart")
    return "ok" if not failed else "FAIL: " + ", ".join(failed)


# -- the bench -----------------------------------------------------------------------------


async def _warm_up(swarm: LocalSwarm, monitor: Monitor, quick: bool) -> None:
    """Until every daemon merges and (full run) its accuracy has settled."""
    goal = 0.5 if quick else 0.9
    while True:
        statuses = [swarm.status(i) for i in range(HONEST)]
        if all(
            s is not None
            and s["counters"]["exchanges"] + s["counters"]["responded"] >= 50
            and s["metrics"].get("accuracy", 0.0) >= goal
            for s in statuses
        ):
            break
        dead = swarm.first_dead()
        if dead is not None:
            raise SystemExit(f"{dead.node} died during start-up: {dead.log_tail}")
        await trio.sleep(0.5)
    await trio.sleep(2.0 if quick else 15.0)  # past the steep part of learning


async def bench(swarm: LocalSwarm, cases: list[Case], timing: Timing, quick: bool) -> list[Any]:
    monitor = Monitor(swarm, timing.sample_s)
    rows = []
    async with trio.open_nursery() as nursery:
        swarm.start()
        targets = await _targets(swarm)
        nursery.start_soon(monitor.run)
        identity = NodeIdentity.load(
            swarm.configs[0].parent / "node.crt",
            swarm.configs[0].parent / "node.key",
            swarm.configs[0].parent / "ca.crt",
        )
        processes = [p for p in swarm.processes if p is not None]
        arena = Arena(
            swarm,
            targets,
            load_config(swarm.configs[0]).discovery.service_type,
            identity.swarm_id,
            _member_hello(swarm),
            quick,
            [p.pid for p in processes],
        )
        await _warm_up(swarm, monitor, quick)
        for case in cases:
            print(f"{case.name} …", file=sys.stderr, flush=True)
            row = await run_case(case, arena, monitor, timing)
            print(f"  {row['verdict']}", file=sys.stderr, flush=True)
            rows.append(row)
        nursery.cancel_scope.cancel()
    return rows


COLUMNS: Final = [
    "case",
    "class",
    "attack_per_s",
    "attacker_cpu_pct",
    "merges_per_s",
    "during",
    "after",
    "least_during",
    "least_after",
    "accuracy",
    "accuracy_pt",
    "fds_max",
    "rss_mb_max",
    "log_lines",
    "crashes",
    "verdict",
]


@contextlib.contextmanager
def _swarm(root: Path | None) -> Iterator[LocalSwarm]:
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gfl-attacks-")))
        swarm = LocalSwarm.create(root, HONEST, trainer_options=DEMO_TRAINER_OPTIONS, gossip=GOSSIP)
        try:
            yield swarm
        finally:
            swarm.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--phase", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--only", nargs="+", metavar="CASE", help="cases whose name starts so")
    parser.add_argument("--keep", type=Path, help="keep the swarm (state, logs) in this folder")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--quick", action="store_true", help="a short run that only shows the bench works"
    )
    args = parser.parse_args(argv)
    timing = Timing(args.phase, 3.0, 1.0)
    if args.quick:  # every attack runs, too briefly to judge (no verdicts)
        timing = Timing(1.5, 0.25, 0.5)
    cases = [c for c in CASES if not args.only or any(c.name.startswith(o) for o in args.only)]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    started = time.monotonic()
    with _swarm(args.keep) as swarm:
        rows = trio.run(bench, swarm, cases, timing, args.quick)
        codes = swarm.stop()
    for row in rows:
        row["exit_codes"] = codes
    write_json(args.json, rows)
    print_table(
        f"{HONEST} honest daemons under attack, {timing.phase_s:g} s per phase "
        "(during/after: the share of their merge rate they kept together; least_*: "
        f"the least any one kept; accuracy_pt: largest loss), "
        f"{time.monotonic() - started:.0f} s in all",
        rows,
        COLUMNS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
