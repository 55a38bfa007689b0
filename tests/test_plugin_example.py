"""The example plug-in package (examples/custom_trainer) drives real daemons."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from gossipfl.node.demo import DEMO_GOSSIP, LocalSwarm
from gossipfl.plugins import TRAINERS, installed
from tests.test_daemon import wait_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_trainer"


def register_example(site: Path) -> None:
    """What `pip install examples/custom_trainer` records, without a pip
    run: a dist-info with the entry points of the example's pyproject."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    dist = site / f"gossipfl_spirals-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = ["[gossipfl.trainers]"]
    lines += [
        f"{name} = {target}"
        for name, target in project["entry-points"]["gossipfl.trainers"].items()
    ]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_two_daemons_learn_with_the_example_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_example(tmp_path / "site")
    for path in (EXAMPLE, tmp_path / "site"):
        monkeypatch.syspath_prepend(str(path))
    assert "spirals-mlp" in installed(TRAINERS)
    swarm = LocalSwarm.create(
        tmp_path / "swarm-root",
        2,
        trainer="spirals-mlp",
        gossip={**DEMO_GOSSIP, "checkpoint_every_s": 1.0},
    )
    pythonpath = os.pathsep.join(
        [str(EXAMPLE), str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]
    )
    swarm.env = {**os.environ, "PYTHONPATH": pythonpath}
    try:
        swarm.start()

        def trained() -> bool:
            statuses = [swarm.status(i) for i in range(2)]
            return all(
                s is not None
                and s["counters"]["exchanges"] >= 100
                and s["counters"]["steps"] >= 600
                for s in statuses
            )

        wait_for("both daemons to train and exchange with spirals-mlp", trained)
    finally:
        swarm.stop()
    for i in range(2):
        accuracy, steps = swarm.evaluate(i)
        assert accuracy > 0.8, f"node{i}: {accuracy} after {steps} steps"
