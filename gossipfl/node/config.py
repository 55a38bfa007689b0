"""``node.toml``: one frozen config type, validated at load.

Every error names the file, the table and key, and what was expected.
Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A config file is missing, unreadable or invalid; the message names
    the file, the key and what was expected."""


@dataclass(frozen=True)
class NodeSection:
    name: str = "gossipfl-node"
    state_dir: Path = Path("state")
    listen: str = "0.0.0.0:7000"  # IPv4 host:port; port 0 picks a free one
    # The address peers should dial; default: the listen address, or when
    # that is 0.0.0.0, the addresses of the interfaces mDNS runs on.
    advertise_host: str = ""
    torch_threads: int = 1  # several daemons may share a small machine


@dataclass(frozen=True)
class SwarmSection:
    ca_cert: Path = Path("ca.crt")
    node_cert: Path = Path("node.crt")
    node_key: Path = Path("node.key")
    seed: int = 0  # swarm-wide: every node starts from the same model


@dataclass(frozen=True)
class DiscoverySection:
    mdns: bool = True
    interfaces: list[str] = field(default_factory=list)  # IPv4 addresses; empty: all
    service_type: str = "_gossipfl._tcp.local."
    seeds: list[str] = field(default_factory=list)  # host:port
    # Peers known at most (announced, shared by peers, proven); when full,
    # those that left, failed or were never proven make room first.
    max_peers: int = 4096


@dataclass(frozen=True)
class GossipSection:
    local_steps: int = 1
    compressor: str = "topk-ef"
    density: float = 0.01
    value_dtype: str = "float32"
    selector: str = "bandwidth"
    max_staleness: int = 200
    exchange_budget_s: float = 2.0
    round_interval_s: float = 0.0  # pause between rounds (0: as fast as training allows)
    # An exchange (and a model pull) may take 2 s + 4x its estimated transfer
    # time, at most this: a stalled partner holds our one exchange slot, and
    # our training, no longer.
    exchange_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    idle_timeout_s: float = 120.0
    max_frame_bytes: int = 0  # 0: sized to the model
    checkpoint_every_s: float = 30.0
    evaluate_every_s: float = 10.0
    # A peer's values are refused beyond this many times our own (see
    # gossipfl/node/bounds.py); value_floor is the scale a fresh model gets.
    max_value_ratio: float = 10.0
    value_floor: float = 1.0


@dataclass(frozen=True)
class LogSection:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True)
class Config:
    path: Path | None
    node: NodeSection = field(default_factory=NodeSection)
    swarm: SwarmSection = field(default_factory=SwarmSection)
    discovery: DiscoverySection = field(default_factory=DiscoverySection)
    gossip: GossipSection = field(default_factory=GossipSection)
    trainer_name: str = "digits-mlp"
    trainer_options: dict[str, Any] = field(default_factory=dict)
    log: LogSection = field(default_factory=LogSection)

    @property
    def listen_host(self) -> str:
        return self.node.listen.rsplit(":", 1)[0]

    @property
    def listen_port(self) -> int:
        return int(self.node.listen.rsplit(":", 1)[1])


_SECTIONS: dict[str, type[Any]] = {
    "node": NodeSection,
    "swarm": SwarmSection,
    "discovery": DiscoverySection,
    "gossip": GossipSection,
    "log": LogSection,
}


def _convert(where: str, value: Any, expected: Any, base: Path) -> Any:
    origin = get_origin(expected)
    if origin in (Union, types.UnionType):
        options = [t for t in get_args(expected) if t is not type(None)]
        return _convert(where, value, options[0], base)
    if expected is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a path (string), got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    if origin is list:
        (item,) = get_args(expected)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{where}: expected a list of {item.__name__}, got {value!r}")
        return list(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")
    return value


def _section(cls: type[Any], table: Any, where: str, base: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    hints = _hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in table.items():
        if key not in hints:
            raise ConfigError(f"{where}: unknown key {key!r}; expected one of {', '.join(known)}")
        values[key] = _convert(f"{where}.{key}", value, hints[key], base)
    section = cls(**values)
    defaults = cls()
    for f in dataclasses.fields(cls):  # relative default paths follow the file too
        if hints[f.name] is Path and f.name not in values:
            object.__setattr__(section, f.name, base / getattr(defaults, f.name))
    return section


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """A section's field types, resolved once: resolving them is slow, and
    a simulated swarm parses a config per node."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _check(config: Config, where: str) -> None:
    g, n = config.gossip, config.node
    rules = [
        (g.local_steps >= 1, "[gossip] local_steps must be >= 1"),
        (0 < g.density <= 1, "[gossip] density must be in (0, 1]"),
        (
            g.value_dtype in ("float32", "float16"),
            "[gossip] value_dtype must be float32 or float16",
        ),
        (g.max_staleness >= 1, "[gossip] max_staleness must be >= 1"),
        (g.exchange_budget_s > 0, "[gossip] exchange_budget_s must be > 0"),
        (g.max_frame_bytes >= 0, "[gossip] max_frame_bytes must be >= 0 (0: sized to the model)"),
        (
            min(g.connect_timeout_s, g.read_timeout_s, g.idle_timeout_s, g.exchange_timeout_s) > 0,
            "[gossip] timeouts must be > 0",
        ),
        (g.checkpoint_every_s > 0 and g.evaluate_every_s > 0, "[gossip] intervals must be > 0"),
        (g.round_interval_s >= 0, "[gossip] round_interval_s must be >= 0"),
        (g.max_value_ratio >= 1, "[gossip] max_value_ratio must be >= 1"),
        (g.value_floor > 0, "[gossip] value_floor must be > 0"),
        (
            ":" in n.listen and n.listen.rsplit(":", 1)[1].isdigit(),
            "[node] listen must be host:port",
        ),
        (n.torch_threads >= 1, "[node] torch_threads must be >= 1"),
        (
            config.log.level in ("debug", "info", "warning", "error"),
            "[log] level must be debug|info|warning|error",
        ),
        (config.log.format in ("json", "console"), "[log] format must be json or console"),
    ]
    host = n.listen.rsplit(":", 1)[0]
    rules.append(
        (
            _ipv4(host),
            f"[node] listen host {host!r} must be an IPv4 address "
            "(0.0.0.0 for every interface, 127.0.0.1 for this machine only)",
        )
    )
    rules.append(
        (
            not n.advertise_host or _ipv4(n.advertise_host),
            f"[node] advertise_host {n.advertise_host!r} must be an IPv4 address (or empty)",
        )
    )
    for address in config.discovery.interfaces:
        rules.append(
            (
                _ipv4(address),
                f"[discovery] interfaces: {address!r} is not an IPv4 address of this host",
            )
        )
    rules.append(
        (
            config.discovery.max_peers >= 8,
            f"[discovery] max_peers = {config.discovery.max_peers} is below 8",
        )
    )
    for seed in config.discovery.seeds:
        rules.append(
            (
                ":" in seed and seed.rsplit(":", 1)[1].isdigit(),
                f"[discovery] seed {seed!r} is not host:port",
            )
        )
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"{where}: {message}")


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML; raises :class:`ConfigError`."""
    where = str(path) if path else "<config>"
    base = path.parent if path else Path.cwd()
    unknown = set(data) - {*_SECTIONS, "trainer"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown table(s) {sorted(unknown)}; "
            f"expected {sorted({*_SECTIONS, 'trainer'})}"
        )
    sections = {
        name: _section(cls, data.get(name, {}), f"{where}: [{name}]", base)
        for name, cls in _SECTIONS.items()
    }
    trainer = data.get("trainer", {})
    if not isinstance(trainer, dict):
        raise ConfigError(f"{where}: [trainer] must be a table")
    options = dict(trainer)
    name = options.pop("name", "digits-mlp")
    if not isinstance(name, str):
        raise ConfigError(
            f"{where}: [trainer].name: expected the trainer's entry point name, got {name!r}"
        )
    config = Config(path=path, trainer_name=name, trainer_options=options, **sections)
    _check(config, where)
    return config


def load_config(path: Path) -> Config:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file (create one with `gossipfl init-config {path}`)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path.resolve())


EXAMPLE = """\
# gossipfl node configuration.  Relative paths are relative to this file.

[node]
name = "node-1"
state_dir = "state"            # model, residual, counters, control socket
listen = "0.0.0.0:7000"        # host:port to accept peers on (port 0: any free port)
advertise_host = ""            # address peers dial (NAT); default: see docs/operator.md
torch_threads = 1              # per daemon; raise on a dedicated machine

[swarm]
ca_cert = "ca.crt"             # from `gossipfl swarm init`
node_cert = "node.crt"         # from `gossipfl keygen`
node_key = "node.key"
seed = 0                       # the same on every node: same initial model

[discovery]
mdns = true                    # find peers on the local network
interfaces = []                # IPv4 addresses to use for mDNS; empty: all
seeds = []                     # ["10.0.0.5:7000"] for networks without multicast
max_peers = 4096               # peers known at most (peers also share what they know)

[gossip]
local_steps = 1                # optimizer steps between exchanges
compressor = "topk-ef"         # topk-ef | randk-shared | dense (the whole swarm must agree)
density = 0.01                 # share of coordinates per exchange
value_dtype = "float32"        # float32 | float16 on the wire
selector = "bandwidth"         # bandwidth | uniform
max_staleness = 200            # rounds before a peer must be contacted (>= 4 x peers)
exchange_budget_s = 2.0        # shrink an exchange to fit this on a slow link
round_interval_s = 0.0         # pause between rounds
exchange_timeout_s = 30.0       # most an exchange may take (usually far less: sized to it)
read_timeout_s = 30.0
checkpoint_every_s = 30.0
evaluate_every_s = 10.0
max_value_ratio = 10.0         # refuse peer values beyond 10x our model's (poisoning, overflow)
value_floor = 1.0              # ... where our model is smaller than this (a fresh one)

[trainer]
name = "digits-mlp"            # see `gossipfl plugins`; the rest are the trainer's options
partition = "iid"

[log]
level = "info"                 # debug | info | warning | error
format = "json"                # json | console
"""
