"""Reliability scenarios on real hosts: a swarm that knows one seed, hosts
killed with ``kill -9`` and restarted, a host unplugged and plugged back,
a host that joins late (on :mod:`simnet.hosts`; measured in
docs/reliability.md, asserted in tests/test_host_scenarios.py).

One bed plays every scenario in turn (:func:`run_scenarios`): six
``digits-logreg`` daemons on Dirichlet shards, 2, 10 and 50 Mbit/s links,
mDNS off and host 0's address as every node's only seed.  What it sees is
recorded in :class:`Observations`; each test asserts one scenario on that
record.  Like test_hosts.py, the run waits on counters and accuracies from
``gossipfl status`` with generous deadlines and never asserts a time: a
wait that runs out is recorded as ``None``, and the test that needs it
fails naming it.  ``bench/hosts_reliability.py`` runs the same and prints
the times it measured.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossipfl.node.checkpoint import read_counters, read_params
from gossipfl.node.config import load_config
from gossipfl.node.run import build_trainer
from simnet.hosts import HostBed, Link, plan_bed

DEADLINE_S = 300.0  # for anything the daemons must do: generous on a busy machine
PORT = 7000  # init-config's listen port
POINTS = 0.02  # "within 2 points" of accuracy
POLL_S = 0.5
Status = dict[str, Any] | None
# When a condition held, in seconds since the event it follows; None: not yet.
Condition = Callable[[Sequence[Status], float], float | None]


@dataclass(frozen=True)
class Plan:
    """Which host does what, and when."""

    links: tuple[float, ...] = (2, 10, 50, 2, 10, 50)
    late: int = 5  # started late_start_s after the others
    killed: tuple[int, ...] = (1, 4)  # kill -9, down for down_s, started again
    cut: int = 2  # unplugged for cut_s, then plugged back
    late_start_s: float = 30.0
    since_checkpoint_s: float = 15.0  # killed this long after a checkpoint (every 30 s)
    down_s: float = 5.0
    cut_s: float = 20.0
    deadline_s: float = DEADLINE_S  # for each wait

    @property
    def hosts(self) -> int:
        return len(self.links)

    @property
    def seed(self) -> str:
        """Host 0's address, as the bed's plan gives it."""
        plan = plan_bed("gfl-0-0", [Link.symmetric(mbit) for mbit in self.links])
        return f"{plan.hosts[0].ip}:{PORT}"

    def overrides(self, i: int) -> dict[str, dict[str, Any]]:
        """Host ``i``'s config beyond the [swarm] paths: no mDNS, one seed,
        and its shard of digits (a device's own data would replace it).
        Evaluations every 2 s (default 10) only sharpen the record."""
        shard = {"partition": "dirichlet", "alpha": 0.5, "node_index": i, "num_nodes": self.hosts}
        return {
            "discovery": {"mdns": False, "seeds": [self.seed]},
            "gossip": {"evaluate_every_s": 2.0},
            "trainer": {"name": "digits-logreg", **shard},
        }


@dataclass
class Event:
    """One host going away and coming back (or arriving late).  Times are
    seconds since it came back: its daemon started, or its link healed."""

    what: str
    host: int
    mbit: float
    away_s: float | None  # down or unplugged for this long
    before: float | None  # its accuracy just before it went away
    answers_s: float | None = None  # its daemon answers `gossipfl status`
    back_s: float | None = None  # its first exchange (either way) since it came back
    right_after: float | None = None  # accuracy when back: restored, isolated, pulled
    caught_up_s: float | None = None  # accuracy back within 2 points of `target`
    caught_up: float | None = None
    others: float | None = None  # the other hosts' mean accuracy then
    target: str = ""
    log_events: list[str] = field(default_factory=list)  # what its log said since
    rounds_lost: int | None = None  # restarted: rounds since the checkpoint it restored


@dataclass
class Observations:
    plan: Plan
    node_ids: list[str]
    addresses: list[str]
    everyone_known_s: float | None = None  # since the first hosts started
    known: list[dict[str, str]] = field(default_factory=list)  # node id -> address, at the end
    partners: list[int] = field(default_factory=list)  # peers exchanged with, at the end
    events: list[Event] = field(default_factory=list)
    gossip: list[float] = field(default_factory=list)  # final checkpoints' accuracy
    alone: list[float] = field(default_factory=list)  # same trainer alone, as many steps
    steps: list[int] = field(default_factory=list)
    wall_s: float = 0.0

    def event(self, what: str, host: int) -> Event:
        return next(e for e in self.events if e.what == what and e.host == host)


LATE, KILLED, CUT = "late join", "kill -9, restart", "cut, heal"


# -- reading the hosts ---------------------------------------------------------------------


def _snapshot(bed: HostBed) -> list[Status]:
    return [bed.status(i) if bed.running(i) else None for i in range(len(bed.links))]


def _accuracy(status: Status) -> float | None:
    value = None if status is None else status["metrics"].get("accuracy")
    return None if value is None else float(value)


def _others_mean(snap: Sequence[Status], hosts: Iterable[int]) -> float | None:
    values = [a for j in hosts if (a := _accuracy(snap[j])) is not None]
    return statistics.fmean(values) if values else None


def _answers(i: int) -> Condition:
    return lambda snap, t: t if snap[i] is not None else None


def _exchanged(i: int) -> Condition:
    """Host ``i`` exchanged with a peer since the event; when it did, to
    the poll interval (each peer's last exchange is all status keeps)."""

    def condition(snap: Sequence[Status], t: float) -> float | None:
        status = snap[i]
        if status is None:
            return None
        ago = [a for p in status["peers"] if (a := p["last_exchange_ago_s"]) is not None and a <= t]
        return max(0.0, t - max(ago)) if ago else None

    return condition


def _checkpointed(i: int) -> Condition:
    def condition(snap: Sequence[Status], t: float) -> float | None:
        status = snap[i]
        return t if status is not None and status["counters"]["checkpoints"] >= 1 else None

    return condition


def _evaluated(i: int) -> Condition:
    return lambda snap, t: t if _accuracy(snap[i]) is not None else None


def _at_least(i: int, floor: float, after: Condition) -> Condition:
    """Host ``i``'s accuracy is ``floor`` or more, once ``after`` held."""

    def condition(snap: Sequence[Status], t: float) -> float | None:
        accuracy = _accuracy(snap[i])
        if after(snap, t) is None or accuracy is None or accuracy < floor:
            return None
        return t

    return condition


def _near_others(i: int, after: Condition) -> Condition:
    """Host ``i``'s accuracy within 2 points of the others' mean, once
    ``after`` held."""

    def condition(snap: Sequence[Status], t: float) -> float | None:
        others = _others_mean(snap, (j for j in range(len(snap)) if j != i))
        accuracy = _accuracy(snap[i])
        if after(snap, t) is None or accuracy is None or others is None:
            return None
        return t if abs(accuracy - others) <= POINTS else None

    return condition


def _knows_everyone(bed: HostBed, addresses: Sequence[str]) -> Condition:
    """Every host knows every other at its address, and has exchanged
    with at least 3 of them (2 in a bed of 3)."""
    partners = min(3, len(addresses) - 1)

    def condition(snap: Sequence[Status], t: float) -> float | None:
        for i, status in enumerate(snap):
            if status is None:
                return None
            known = {p["node_id"]: p["address"] for p in status["peers"]}
            wanted = {nid: addresses[j] for j, nid in enumerate(bed.node_ids) if j != i}
            if any(known.get(nid) != address for nid, address in wanted.items()):
                return None
            if sum(p["exchanges"] >= 1 for p in status["peers"]) < partners:
                return None
        return t

    return condition


def _watch(
    bed: HostBed, conditions: Mapping[str, Condition], since: float, timeout: float
) -> tuple[dict[str, float | None], dict[str, list[Status]]]:
    """Poll every host until each condition has held once, or ``timeout``
    seconds after ``since`` (a ``time.monotonic()``).  Returns when each
    held (None: never) and the snapshot it first held in.  Raises
    DaemonDiedError if a started daemon exits meanwhile."""
    when: dict[str, float | None] = dict.fromkeys(conditions)
    seen: dict[str, list[Status]] = {}
    while True:
        bed.check_alive()
        t = time.monotonic() - since
        snap = _snapshot(bed)
        for key, condition in conditions.items():
            if when[key] is None and (held := condition(snap, t)) is not None:
                when[key], seen[key] = held, snap
        if all(v is not None for v in when.values()) or t > timeout:
            return when, seen
        time.sleep(POLL_S)


def _log_records(bed: HostBed, i: int, offset: int) -> list[dict[str, Any]]:
    """What host ``i``'s daemon logged past byte ``offset`` of its log."""
    with open(bed.log_path(i), "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            records.append(record)
    return records


def _log_size(bed: HostBed, i: int) -> int:
    path = bed.log_path(i)
    return path.stat().st_size if path.exists() else 0


# -- the run ---------------------------------------------------------------------------------


def run_scenarios(root: Path, plan: Plan | None = None) -> Observations:
    """Build the bed in ``root``, play every scenario in turn, stop every
    daemon at once and compare each final model with its trainer alone."""
    plan = plan or Plan()
    began = time.monotonic()
    with HostBed(list(plan.links), root=root, overrides=plan.overrides, nice=10) as bed:
        addresses = [f"{h.ip}:{PORT}" for h in bed.plan.hosts]
        seen = Observations(plan, list(bed.node_ids), addresses)
        early = [i for i in range(plan.hosts) if i != plan.late]
        start = time.monotonic()
        for i in early:
            bed.start(i)
        _watch(bed, {f"h{i}": _exchanged(i) for i in early}, start, plan.deadline_s)
        time.sleep(max(0.0, start + plan.late_start_s - time.monotonic()))

        seen.events.append(_late_join(bed, plan))
        everyone = _knows_everyone(bed, addresses)
        seen.everyone_known_s = _watch(bed, {"all": everyone}, start, plan.deadline_s)[0]["all"]
        seen.events += _kill_and_restart(bed, plan)
        seen.events.append(_cut_and_heal(bed, plan))

        # The end: everyone (restarted hosts too) knows everyone again.
        _watch(bed, {"all": everyone}, time.monotonic(), plan.deadline_s)
        for status in _snapshot(bed):
            peers = [] if status is None else status["peers"]
            seen.known.append({p["node_id"]: p["address"] for p in peers})
            seen.partners.append(sum(p["exchanges"] >= 1 for p in peers))
        # All at once, each writing a final checkpoint: a host left alone
        # would go on training on its shard only.
        bed.stop_all()
        for i in range(plan.hosts):
            state = bed.state_dir(i)
            model = build_trainer(load_config(bed.config_path(i)))
            model.set_params(read_params(state))
            alone = build_trainer(load_config(bed.config_path(i)))
            steps = read_counters(state)["steps"]
            alone.train(steps)
            seen.gossip.append(model.evaluate()["accuracy"])
            seen.alone.append(alone.evaluate()["accuracy"])
            seen.steps.append(steps)
    seen.wall_s = time.monotonic() - began
    return seen


def _late_join(bed: HostBed, plan: Plan) -> Event:
    i = plan.late
    event = Event(LATE, i, plan.links[i], None, None, target="the others' mean")
    offset = _log_size(bed, i)
    since = time.monotonic()
    bed.start(i)
    when, snaps = _watch(
        bed,
        {
            "answers": _answers(i),
            "back": _exchanged(i),
            "evaluated": _evaluated(i),
            "caught_up": _near_others(i, _exchanged(i)),
        },
        since,
        plan.deadline_s,
    )
    _record(event, i, when, snaps, (j for j in range(plan.hosts) if j != i))
    event.log_events = [r["event"] for r in _log_records(bed, i, offset)]
    return event


def _kill_and_restart(bed: HostBed, plan: Plan) -> list[Event]:
    # Killed once each has a checkpoint to come back to, halfway to the next.
    _watch(bed, {f"{i}": _checkpointed(i) for i in plan.killed}, time.monotonic(), plan.deadline_s)
    time.sleep(plan.since_checkpoint_s)
    before = _snapshot(bed)
    events = {
        i: Event(KILLED, i, plan.links[i], None, _accuracy(before[i]), target="its own, before")
        for i in plan.killed
    }
    killed_at = time.monotonic()
    for i in plan.killed:
        bed.kill(i)
    time.sleep(plan.down_s)
    offsets = {i: _log_size(bed, i) for i in plan.killed}
    since = time.monotonic()
    for i in plan.killed:
        events[i].away_s = since - killed_at
        bed.start(i)
    conditions: dict[str, Condition] = {}
    for i, event in events.items():
        floor = (event.before or 0.0) - POINTS
        conditions |= {
            f"answers@{i}": _answers(i),
            f"back@{i}": _exchanged(i),
            f"evaluated@{i}": _evaluated(i),
            f"caught_up@{i}": _at_least(i, floor, _exchanged(i)),
        }
    when, snaps = _watch(bed, conditions, since, plan.deadline_s)
    others = [j for j in range(plan.hosts) if j not in plan.killed]
    for i, event in events.items():
        suffix = f"@{i}"
        _record(
            event,
            i,
            {k.removesuffix(suffix): v for k, v in when.items() if k.endswith(suffix)},
            {k.removesuffix(suffix): v for k, v in snaps.items() if k.endswith(suffix)},
            others,
        )
        records = _log_records(bed, i, offsets[i])
        event.log_events = [r["event"] for r in records]
        restored = [r for r in records if r["event"] == "checkpoint_restored"]
        status = before[i]
        if restored and status is not None:
            event.rounds_lost = int(status["counters"]["rounds"]) - int(restored[0]["rounds"])
    return list(events.values())


def _cut_and_heal(bed: HostBed, plan: Plan) -> Event:
    i = plan.cut
    event = Event(CUT, i, plan.links[i], plan.cut_s, _accuracy(_snapshot(bed)[i]))
    event.target = "the others' mean"
    offset = _log_size(bed, i)
    bed.cut(i)
    time.sleep(plan.cut_s)
    event.right_after = _accuracy(_snapshot(bed)[i])  # trained alone all along
    since = time.monotonic()
    bed.heal(i)
    when, snaps = _watch(
        bed,
        {"back": _exchanged(i), "caught_up": _near_others(i, _exchanged(i))},
        since,
        plan.deadline_s,
    )
    _record(event, i, when, snaps, (j for j in range(plan.hosts) if j != i))
    event.log_events = [r["event"] for r in _log_records(bed, i, offset)]
    return event


def _record(
    event: Event,
    i: int,
    when: Mapping[str, float | None],
    snaps: Mapping[str, list[Status]],
    others: Iterable[int],
) -> None:
    event.answers_s = when.get("answers")
    event.back_s = when.get("back")
    if "evaluated" in snaps:
        event.right_after = _accuracy(snaps["evaluated"][i])
    event.caught_up_s = when.get("caught_up")
    if "caught_up" in snaps:
        event.caught_up = _accuracy(snaps["caught_up"][i])
        event.others = _others_mean(snaps["caught_up"], others)


# -- the tests -------------------------------------------------------------------------------
