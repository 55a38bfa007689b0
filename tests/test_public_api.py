"""The curated public surface, and the dependency direction of DESIGN.md."""

from __future__ import annotations

import ast
from pathlib import Path

import gossipfl
import gossipfl.compress
import gossipfl.trainers

ROOT = Path(__file__).resolve().parent.parent


def test_public_api_is_what_we_document() -> None:
    assert sorted(gossipfl.__all__) == ["PluginError", "Trainer", "TrainerSpec", "__version__"]
    assert sorted(gossipfl.trainers.__all__) == [
        "Trainer",
        "TrainerError",
        "TrainerSpec",
        "load_trainer",
    ]
    for name in gossipfl.compress.__all__:
        assert hasattr(gossipfl.compress, name), name


def test_trainer_spec_has_exactly_the_documented_fields() -> None:
    fields = list(gossipfl.TrainerSpec.__dataclass_fields__)
    assert fields == ["options", "seed", "data_dir", "node_index", "num_nodes"]


def _imports(package: Path) -> set[str]:
    found: set[str] = set()
    for path in package.rglob("*.py"):
        found |= _imports_of(path)
    return found


def test_compress_and_protocol_use_nothing_of_the_rest_of_gossipfl() -> None:
    for name in ("compress", "protocol"):
        imported = _imports(ROOT / "gossipfl" / name)
        foreign = {
            m for m in imported if m.startswith("gossipfl") and not m.startswith(f"gossipfl.{name}")
        }
        assert not foreign, f"gossipfl.{name} imports {foreign}"


def test_protocol_does_no_io() -> None:
    imported = _imports(ROOT / "gossipfl" / "protocol")
    roots = {m.split(".")[0] for m in imported}
    assert not roots & {"trio", "socket", "ssl", "zeroconf", "asyncio"}


def test_the_node_engine_knows_no_concrete_network_compute_or_state() -> None:
    """One engine for daemon and simulation: what differs is injected, so the
    engine imports no sockets, TLS, threads, mDNS or simulator."""
    engine = ROOT / "gossipfl" / "node" / "engine.py"
    imported = _imports_of(engine)
    forbidden = {
        "socket",
        "ssl",
        "threading",
        "zeroconf",
        "simnet",
        "gossipfl.transport.tcp",
        "gossipfl.transport.memory",
        "gossipfl.topology.mdns",
        "gossipfl.node.run",
    }
    assert not {m for m in imported if m.split(".")[0] in forbidden or m in forbidden}
    source = engine.read_text()
    for call in ("to_thread", "open_tcp", "time.time", "time.monotonic"):
        assert call not in source, call


def _imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found
