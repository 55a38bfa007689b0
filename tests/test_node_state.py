"""Config files and checkpoints: clear errors, nothing silently lost."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest

from gossipfl.node.checkpoint import (
    Checkpoint,
    CheckpointError,
    Identity,
    load_checkpoint,
    save_checkpoint,
)
from gossipfl.node.config import EXAMPLE, ConfigError, load_config
from gossipfl.node.state import FileStateStore, StateDirError


def test_the_commented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    assert config.gossip.compressor == "topk-ef"
    assert config.swarm.ca_cert == tmp_path / "ca.crt"
    assert config.node.state_dir == tmp_path / "state"
    assert config.trainer_name == "digits-mlp"
    assert config.trainer_options == {"partition": "iid"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gossip]\ndensity = 'lots'\n", r"\[gossip\]\.density: expected float, got 'lots'"),
        ("[gossip]\ndensity = 2.0\n", r"density must be in \(0, 1\]"),
        (
            "[gossip]\ndensty = 0.1\n",
            r"unknown key 'densty'; expected one of local_steps, compressor",
        ),
        ("[gosip]\n", r"unknown table\(s\) \['gosip'\]"),
        ("[node]\nlisten = '7000'\n", r"listen must be host:port"),
        ("[node]\nlisten = 'localhost:7000'\n", r"listen host 'localhost' must be an IPv4"),
        ("[node]\nadvertise_host = 'my.box'\n", r"advertise_host 'my.box' must be an IPv4"),
        ("[discovery]\ninterfaces = ['eth0']\n", r"'eth0' is not an IPv4 address"),
        ("[gossip]\nround_interval_s = -1\n", r"round_interval_s must be >= 0"),
        ("[discovery]\nseeds = ['nohost']\n", r"seed 'nohost' is not host:port"),
        ("[discovery]\nmdns = 1\n", r"mdns: expected bool, got 1"),
        ("[trainer]\nname = 3\n", r"\[trainer\]\.name"),
        ("[node\n", r"not valid TOML"),
    ],
)
def test_bad_files_name_the_file_the_key_and_the_expectation(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gossipfl init-config"):
        load_config(tmp_path / "nope.toml")


IDENTITY = Identity("s" * 32, "digits-logreg", 10, "ab" * 32)


def _checkpoint() -> Checkpoint:
    rng = np.random.default_rng(0)
    params, residual = (rng.standard_normal(10).astype(np.float32) for _ in range(2))
    return Checkpoint(IDENTITY, "n" * 64, params, residual, {"exchanges": 7, "rounds": 9})


def test_checkpoints_round_trip_exactly(tmp_path: Path) -> None:
    saved = _checkpoint()
    save_checkpoint(tmp_path, saved)
    loaded = load_checkpoint(tmp_path, IDENTITY)
    assert loaded is not None
    assert np.array_equal(loaded.params, saved.params)
    assert np.array_equal(loaded.residual, saved.residual)
    assert loaded.counters == {"exchanges": 7, "rounds": 9}
    assert not list(tmp_path.glob(".*tmp"))
    assert load_checkpoint(tmp_path / "empty", IDENTITY) is None


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        (Identity("t" * 32, "digits-logreg", 10, "ab" * 32), "another swarm id"),
        (Identity("s" * 32, "digits-mlp", 10, "ab" * 32), "another trainer"),
        (Identity("s" * 32, "digits-logreg", 11, "ab" * 32), "another dim"),
        (Identity("s" * 32, "digits-logreg", 10, "cd" * 32), "another initial model hash"),
    ],
)
def test_foreign_checkpoints_are_refused(tmp_path: Path, identity: Identity, message: str) -> None:
    save_checkpoint(tmp_path, _checkpoint())
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path, identity)


def test_corrupt_checkpoints_are_refused_not_discarded(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, _checkpoint())
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path, IDENTITY)
    assert path.exists()
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="move it away"):
        load_checkpoint(tmp_path, IDENTITY)


@pytest.mark.parametrize("field", ["params", "residual"])
def test_a_checkpoint_with_non_finite_values_is_refused_at_load(tmp_path: Path, field: str) -> None:
    """Written by a version without value bounds after a poisoned merge, it
    crashed the node again at every restart."""
    path = save_checkpoint(tmp_path, _checkpoint())
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays["meta"].tobytes())
    arrays[field][3] = np.inf
    meta[f"{field}_sha256"] = hashlib.sha256(arrays[field].astype("<f4").tobytes()).hexdigest()
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="NaN or infinite parameters.*move it away"):
        load_checkpoint(tmp_path, IDENTITY)


def test_a_non_finite_model_is_never_saved_over_a_good_checkpoint(tmp_path: Path) -> None:
    good = _checkpoint()
    path = save_checkpoint(tmp_path, good)
    before = path.read_bytes()
    bad = Checkpoint(IDENTITY, good.node_id, good.params.copy(), good.residual, good.counters)
    bad.params[0] = np.nan
    with pytest.raises(CheckpointError, match="refusing to save NaN"):
        save_checkpoint(tmp_path, bad)
    assert path.read_bytes() == before


def test_a_checkpoint_write_that_fails_leaves_the_previous_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path, _checkpoint())
    before = path.read_bytes()

    def disk_full(handle: BinaryIO, **arrays: np.ndarray) -> None:
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, _checkpoint())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no half-written temp


def test_state_dirs_and_checkpoints_are_private(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state")
    store.claim()
    path = save_checkpoint(tmp_path / "state", _checkpoint())
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_second_claim_on_a_state_dir_names_the_daemon_holding_it(tmp_path: Path) -> None:
    FileStateStore(tmp_path).claim()
    with pytest.raises(
        StateDirError, match=f"in use by another gossipfl daemon \\(pid {os.getpid()}\\)"
    ):
        FileStateStore(tmp_path).claim()
