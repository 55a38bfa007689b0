"""Every bench runs: its ``--quick`` mode, run by path as a user would run
it, ends cleanly and prints its table.  Numbers are not checked here (a
test never times anything); the benches themselves report them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def test_every_bench_is_listed_here_and_in_the_makefile() -> None:
    makefile = (BENCH.parent / "Makefile").read_text()
    assert SCRIPTS == [
        "algorithm.py",
        "attacks.py",
        "calibration.py",
        "compress.py",
        "compression_sim.py",
        "hosts_reliability.py",
        "partner_choice.py",
        "partner_selection.py",
        "scale.py",
        "soak.py",
        "swarm.py",
        "swarm_calibration.py",
        "transport.py",
    ]
    for script in SCRIPTS:
        assert f"bench/{script}" in makefile, script


# Real hosts in network namespaces: a minute and a half even when quick.
SLOW = {"calibration.py", "hosts_reliability.py", "swarm_calibration.py"}


@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in SCRIPTS]
)
def test_the_bench_runs_in_quick_mode(script: str, tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--json", str(rows)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the project root: imports must not depend on it
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "┏" in done.stdout  # a table
    assert rows.read_text().startswith("[")
    assert "issue" not in done.stdout.lower()
