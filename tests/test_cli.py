"""The command line as a user meets it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gossipfl.node.checkpoint import Checkpoint, Identity, save_checkpoint
from gossipfl.node.cli import main
from gossipfl.node.config import load_config
from gossipfl.node.scaffold import scaffold_swarm


def test_plugins_lists_the_built_ins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "gossipfl.trainers: digits-logreg, digits-mlp" in out
    assert "gossipfl.compressors: dense, randk-shared, topk-ef" in out


def test_version_and_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("gossipfl ")
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_init_config_writes_a_loadable_example_and_keeps_existing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.toml"
    assert main(["init-config", str(path)]) == 0
    assert load_config(path).gossip.compressor == "topk-ef"
    assert main(["init-config", str(path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


def test_export_writes_the_checkpointed_model(tmp_path: Path) -> None:
    params = np.arange(5, dtype=np.float32)
    identity = Identity("s" * 32, "t", 5, "00")
    save_checkpoint(tmp_path, Checkpoint(identity, "n", params, np.zeros(5, np.float32), {}))
    assert main(["export", "--state-dir", str(tmp_path), "--out", str(tmp_path / "m.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "m.npy"), params)


def test_run_and_status_fail_clearly_without_a_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "gossipfl init-config" in capsys.readouterr().err
    assert main(["status", "--state-dir", str(tmp_path)]) == 1
    assert "no running daemon" in capsys.readouterr().err


def test_run_refuses_a_node_its_peers_could_not_reach(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node listening on loopback with its seed on another host would
    tell every peer to dial that peer's own loopback: no exchange, ever."""
    (config,) = scaffold_swarm(tmp_path, 1)
    text = config.read_text().replace("[discovery]", '[discovery]\nseeds = ["10.9.9.9:7000"]', 1)
    config.write_text(text)
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert str(config) in err
    assert "seeds are on other hosts (10.9.9.9)" in err
    assert "listen on 0.0.0.0" in err
