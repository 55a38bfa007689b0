"""The command line as a user meets it."""

from __future__ import annotations

import pytest

from gossipfl.node.cli import main


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
