"""A throwaway swarm on one machine: CA, node keys and one ``node.toml`` per
node, all on 127.0.0.1.  Used by ``gossipfl demo`` and the integration tests."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from gossipfl.transport.identity import init_swarm, keygen


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_toml(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))


def scaffold_swarm(
    root: Path,
    peers: int,
    *,
    trainer: str = "digits-mlp",
    trainer_options: dict[str, Any] | None = None,
    gossip: dict[str, Any] | None = None,
    seed: int = 0,
    partition_nodes: bool = True,
) -> list[Path]:
    """Create ``root/swarm`` and ``root/node{i}/node.toml`` for ``peers``
    nodes; returns the config paths.  mDNS runs on 127.0.0.1 with a service
    type of its own, so concurrent demos and tests never see each other."""
    init_swarm(root / "swarm")
    service_type = f"_gfl-{secrets.token_hex(4)}._tcp.local."
    configs = []
    for i in range(peers):
        node_dir = root / f"node{i}"
        keygen(root / "swarm", node_dir)
        options = {"name": trainer, **(trainer_options or {})}
        if partition_nodes:
            options |= {"node_index": i, "num_nodes": peers}
        path = node_dir / "node.toml"
        write_toml(
            path,
            {
                "node": {
                    "name": f"node{i}",
                    "state_dir": "state",
                    "listen": "127.0.0.1:0",
                    "torch_threads": 1,
                },
                "swarm": {
                    "ca_cert": "ca.crt",
                    "node_cert": "node.crt",
                    "node_key": "node.key",
                    "seed": seed,
                },
                "discovery": {
                    "mdns": True,
                    "interfaces": ["127.0.0.1"],
                    "service_type": service_type,
                },
                "gossip": {"evaluate_every_s": 2.0, "checkpoint_every_s": 5.0, **(gossip or {})},
                "trainer": options,
                "log": {"level": "info", "format": "json"},
            },
        )
        configs.append(path)
    return configs
