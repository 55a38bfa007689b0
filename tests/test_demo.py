"""``gossipfl demo`` with real daemons: it tells the truth when a daemon
dies, and stopping it (Ctrl-C or SIGTERM) stops every daemon it started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from gossipfl.node.demo import DEMO_GOSSIP, LocalSwarm, demo_swarm
from tests.test_daemon import wait_for


def _daemons_of(root: Path) -> list[int]:
    """Pids of live processes whose command line names a file under ``root``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if str(root) in cmdline and "run" in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def test_the_demo_names_a_daemon_that_died_and_fails(tmp_path: Path) -> None:
    swarm = LocalSwarm.create(tmp_path, 2, gossip=DEMO_GOSSIP)
    state = swarm.state_dir(1)
    state.mkdir(parents=True)
    (state / "checkpoint.npz").write_bytes(b"not a checkpoint")  # its daemon cannot start
    console = Console(record=True, width=200)
    code = demo_swarm(swarm, duration=120, console=console)
    output = console.export_text()
    assert code == 1
    assert "node1 exited with code 1 before the demo ended" in output
    assert "checkpoint.npz is corrupt" in output  # the end of its log
    assert "beat training alone" not in output
    assert not _daemons_of(tmp_path)


@pytest.mark.skipif(sys.platform != "linux", reason="finds processes through /proc")
def test_sigterm_stops_the_demo_and_every_daemon(tmp_path: Path) -> None:
    command = ["-m", "gossipfl", "demo", "--peers", "2", "--duration", "300", "--dir"]
    demo = subprocess.Popen(
        [sys.executable, *command, str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sockets = [tmp_path / f"node{i}" / "state" / "control.sock" for i in range(2)]
        wait_for("both daemons to run", lambda: all(s.exists() for s in sockets), timeout=120)
        assert len(_daemons_of(tmp_path)) == 2
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        demo.kill()
    deadline = time.monotonic() + 30
    while _daemons_of(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _daemons_of(tmp_path)
    for i in range(2):  # each stopped cleanly: a final checkpoint, no socket left
        assert (tmp_path / f"node{i}" / "state" / "checkpoint.npz").exists()
        assert not sockets[i].exists()
