"""Scenarios: the network, compute and events of a simulated swarm.

A scenario is data: bandwidth tiers (each node drawn into one, with its
uplink, downlink, one-way access latency and compute speed), the virtual
seconds one local step costs at speed 1, a default size and duration, and
events at virtual times.  The built-in ones are :data:`BUILT_IN`; a TOML
file with the same fields is read by :func:`load_scenario`, and every
error names the file and the field.

Events (``[[events]]``, each with ``at_s`` and ``kind``):

* ``leave`` -- nodes stop gracefully: goodbyes, final checkpoint, their
  announcement is withdrawn;
* ``crash`` -- nodes stop dead: no goodbye, no final checkpoint, their
  announcement stays (as a stale mDNS record would);
* ``rejoin`` -- stopped nodes start again, from their last checkpoint, or
  from scratch with ``fresh = true``; without ``nodes`` or ``share``, the
  nodes of the earliest ``crash`` or ``leave`` not yet rejoined;
* ``partition`` -- the swarm splits in two (``share`` of the nodes in the
  first part); ``heal`` -- it is one again;
* ``degrade`` -- nodes' bandwidth is multiplied by ``factor`` and
  ``latency_ms`` is added to their latency; ``recover`` -- back to normal;
* ``drop`` -- every connection of the nodes breaks, mid-transfer.

Which nodes: ``nodes = [indices]``, or ``share = 0.1`` for that share of
the swarm, picked by the run's seed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from simnet.links import HostLink

MBIT: Final = 1e6 / 8  # bytes per second
KINDS: Final = ("leave", "crash", "rejoin", "partition", "heal", "degrade", "recover", "drop")


class ScenarioError(ValueError):
    """A scenario that cannot run; the message names the file and field."""


@dataclass(frozen=True)
class Tier:
    """A class of device: its ``share`` of the swarm and its link."""

    share: float
    uplink_mbit: float
    downlink_mbit: float
    latency_ms: tuple[float, float]  # one-way access latency, drawn uniformly
    speed: tuple[float, float] = (1.0, 1.0)  # compute speed factor, drawn uniformly


@dataclass(frozen=True)
class Event:
    at_s: float
    kind: str
    nodes: tuple[int, ...] = ()
    share: float = 0.0  # of the swarm, when ``nodes`` is empty
    fresh: bool = False  # rejoin: from scratch rather than the checkpoint
    factor: float = 1.0  # degrade: bandwidth multiplier
    latency_ms: float = 0.0  # degrade: added one-way latency

    def targets(self, peers: int, seed: int) -> list[int]:
        """The node indices this event applies to, in a run of ``peers``."""
        if self.nodes:
            return [i for i in self.nodes if i < peers]
        count = max(1, round(self.share * peers)) if self.share > 0 else 0
        rng = np.random.default_rng([seed, 0xE7E27, int(self.at_s * 1000), KINDS.index(self.kind)])
        return sorted(int(i) for i in rng.choice(peers, size=min(count, peers), replace=False))


@dataclass(frozen=True)
class Scenario:
    name: str
    tiers: tuple[Tier, ...]
    peers: int = 32
    duration_s: float = 60.0
    step_cost_s: float = 0.05  # virtual seconds per local step at speed 1
    events: tuple[Event, ...] = ()
    description: str = ""

    def hosts(self, peers: int, seed: int) -> list[tuple[HostLink, float]]:
        """Each node's link and compute speed, drawn from the tiers by
        ``seed``: tier sizes follow the shares exactly (rounded), and which
        node lands in which tier is shuffled."""
        rng = np.random.default_rng([seed, 0x7135])
        shares = np.array([t.share for t in self.tiers]) / sum(t.share for t in self.tiers)
        counts = np.floor(shares * peers).astype(int)
        for i in np.argsort(-(shares * peers - counts))[: peers - counts.sum()]:
            counts[i] += 1
        tiers = rng.permutation(np.repeat(np.arange(len(self.tiers)), counts))
        drawn = []
        for index in tiers:
            tier = self.tiers[index]
            latency = rng.uniform(*tier.latency_ms) / 1000
            speed = float(rng.uniform(*tier.speed))
            link = HostLink(tier.uplink_mbit * MBIT, tier.downlink_mbit * MBIT, latency)
            drawn.append((link, speed))
        return drawn


def _tier(mbit: float, latency_ms: tuple[float, float], share: float = 1.0) -> Tier:
    return Tier(share, mbit, mbit, latency_ms, speed=(0.8, 1.2))


BUILT_IN: Final[dict[str, Scenario]] = {
    "lan": Scenario(
        "lan",
        (_tier(100, (0.1, 0.5)),),
        description="one 100 Mbit/s LAN, sub-millisecond latency",
    ),
    "edge-hetero": Scenario(
        "edge-hetero",
        (
            _tier(100, (1, 5), share=1 / 3),
            _tier(10, (5, 25), share=1 / 3),
            _tier(1, (25, 100), share=1 / 3),
        ),
        description=(
            "edge devices in three tiers: 100, 10 and 1 Mbit/s, slower links farther "
            "away (link latencies 2-200 ms)"
        ),
    ),
    "churn": Scenario(
        "churn",
        (_tier(10, (2, 20)),),
        events=(
            Event(15.0, "crash", share=0.1),
            Event(20.0, "leave", share=0.1),
            Event(30.0, "rejoin"),
            Event(40.0, "rejoin", fresh=True),
        ),
        description=(
            "10 Mbit/s links; 10% crash at 15 s and restart from their checkpoints at 30 s, "
            "10% leave at 20 s and come back fresh at 40 s"
        ),
    ),
    "partition": Scenario(
        "partition",
        (_tier(10, (2, 20)),),
        events=(Event(15.0, "partition", share=0.5), Event(35.0, "heal")),
        description="10 Mbit/s links; split in two halves from 15 s to 35 s",
    ),
}


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or one read from a TOML file."""
    if name_or_path in BUILT_IN:
        return BUILT_IN[name_or_path]
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        raise ScenarioError(
            f"no scenario {name_or_path!r}: built-in ones are {', '.join(BUILT_IN)}, "
            "or give a TOML file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return parse_scenario(data, str(path), default_name=path.stem)


class _Fields:
    """Reads one TOML table, naming ``where`` in every error, and refuses
    keys it was not asked for."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{where}: must be a table")
        self.data, self.where, self.seen = data, where, set[str]()

    def fail(self, key: str, why: str) -> ScenarioError:
        return ScenarioError(f"{self.where}.{key}: {why}")

    def number(
        self, key: str, default: float | None = None, *, low: float = 0.0, above: bool = False
    ) -> float:
        self.seen.add(key)
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(key, "missing")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(key, f"must be a number, got {value!r}")
        if value < low or (above and value == low):
            raise self.fail(key, f"must be {'>' if above else '>='} {low:g}, got {value!r}")
        return float(value)

    def span(self, key: str, default: tuple[float, float] | None = None) -> tuple[float, float]:
        self.seen.add(key)
        value = self.data.get(key, default)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = (value, value)
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] <= value[1]
        ):
            raise self.fail(
                key, f"must be a number or [low, high] with 0 <= low <= high, got {value!r}"
            )
        return (float(value[0]), float(value[1]))

    def text(self, key: str, default: str | None = None) -> str:
        self.seen.add(key)
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], f"unknown field (known: {', '.join(sorted(self.seen))})")


def parse_scenario(data: dict[str, Any], where: str, default_name: str = "custom") -> Scenario:
    top = _Fields(data, where)
    name = top.text("name", default_name)
    description = top.text("description", "")
    peers = int(top.number("peers", 32, low=2))
    duration = top.number("duration_s", 60.0, above=True)
    step_cost = top.number("step_cost_s", 0.05)
    top.seen.update({"tiers", "events"})
    raw_tiers = data.get("tiers")
    if not isinstance(raw_tiers, list) or not raw_tiers:
        raise top.fail("tiers", "needs at least one [[tiers]] table")
    tiers = tuple(_parse_tier(t, f"{where}: tiers[{i}]") for i, t in enumerate(raw_tiers))
    raw_events = data.get("events", [])
    if not isinstance(raw_events, list):
        raise top.fail("events", "must be a list of [[events]] tables")
    events = tuple(_parse_event(e, f"{where}: events[{i}]") for i, e in enumerate(raw_events))
    top.done()
    return Scenario(name, tiers, peers, duration, step_cost, events, description)


def _parse_tier(data: Any, where: str) -> Tier:
    fields = _Fields(data, where)
    tier = Tier(
        share=fields.number("share", 1.0, above=True),
        uplink_mbit=fields.number("uplink_mbit", above=True),
        downlink_mbit=fields.number("downlink_mbit", above=True),
        latency_ms=fields.span("latency_ms", (0.0, 0.0)),
        speed=fields.span("speed", (1.0, 1.0)),
    )
    if tier.speed[0] <= 0:
        raise fields.fail("speed", "must be > 0")
    fields.done()
    return tier


def _parse_event(data: Any, where: str) -> Event:
    fields = _Fields(data, where)
    at = fields.number("at_s")
    kind = fields.text("kind")
    if kind not in KINDS:
        raise fields.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    fields.seen.update({"nodes", "fresh"})
    nodes = data.get("nodes", [])
    if not isinstance(nodes, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in nodes
    ):
        raise fields.fail("nodes", f"must be a list of node indices, got {nodes!r}")
    fresh = data.get("fresh", False)
    if not isinstance(fresh, bool):
        raise fields.fail("fresh", f"must be true or false, got {fresh!r}")
    event = Event(
        at,
        kind,
        tuple(nodes),
        share=fields.number("share", 0.0),
        fresh=fresh,
        factor=fields.number("factor", 1.0, above=True),
        latency_ms=fields.number("latency_ms", 0.0),
    )
    if event.share > 1:
        raise fields.fail("share", f"must be at most 1, got {event.share!r}")
    needs_nodes = kind not in ("heal", "recover", "partition", "rejoin")
    if needs_nodes and not event.nodes and event.share == 0:
        raise fields.fail("nodes", f"a {kind} event needs nodes = [...] or share = ...")
    if kind == "partition" and not (0 < event.share < 1) and not event.nodes:
        raise fields.fail("share", "a partition needs 0 < share < 1 (the first part) or nodes")
    fields.done()
    return event
