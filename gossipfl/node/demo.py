"""``gossipfl demo``: real daemons on 127.0.0.1 learning together.

Creates a throwaway swarm, starts ``peers`` real ``gossipfl run`` processes
that find each other over mDNS and train ``digits-mlp`` on non-IID shards,
shows a live table, and ends with each node's accuracy next to the same
trainer trained alone on the same data for the same number of steps.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from gossipfl.node.checkpoint import read_counters, read_params
from gossipfl.node.config import load_config
from gossipfl.node.run import build_trainer
from gossipfl.node.scaffold import scaffold_swarm
from gossipfl.node.state import read_status

_PR_SET_PDEATHSIG = 1
DEMO_TRAINER_OPTIONS = {"partition": "dirichlet", "alpha": 0.5}
DEMO_GOSSIP = {"density": 0.1, "local_steps": 1, "round_interval_s": 0.005}


def _stop_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the process
    that started us dies, however it dies (even ``kill -9``), so that no
    daemon outlives its demo or test."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class LocalSwarm:
    """Real daemons, one process each, on this machine."""

    root: Path
    configs: list[Path]
    processes: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    env: dict[str, str] | None = None  # environment of the daemons (default: ours)

    @classmethod
    def create(cls, root: Path, peers: int, **kwargs: Any) -> LocalSwarm:
        return cls(root, scaffold_swarm(root, peers, **kwargs))

    def state_dir(self, i: int) -> Path:
        return self.configs[i].parent / "state"

    def log_path(self, i: int) -> Path:
        return self.configs[i].parent / "node.log"

    def start(self, i: int | None = None) -> None:
        indices = range(len(self.configs)) if i is None else [i]
        while len(self.processes) < len(self.configs):
            self.processes.append(None)
        for index in indices:
            log = open(self.log_path(index), "ab")  # noqa: SIM115 - the child owns it
            self.processes[index] = subprocess.Popen(
                [sys.executable, "-m", "gossipfl", "run", "--config", str(self.configs[index])],
                stdout=log,
                stderr=log,
                env=self.env,
                preexec_fn=_stop_with_parent,
            )

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            return read_status(self.state_dir(i), timeout_s=2)
        except (OSError, ValueError):
            return None

    def signal(self, i: int, signum: int) -> None:
        process = self.processes[i]
        if process is not None and process.poll() is None:
            process.send_signal(signum)

    def wait(self, i: int, timeout: float = 30) -> int | None:
        return reap(self.processes[i], timeout)

    def stop(self) -> list[int | None]:
        """SIGTERM every daemon and wait for it; returns their exit codes."""
        for i in range(len(self.processes)):
            self.signal(i, signal.SIGTERM)
        return [self.wait(i) for i in range(len(self.processes))]

    def first_dead(self, codes: list[int | None] | None = None) -> DaemonDied | None:
        """The first daemon that has exited with an error (or, before
        :meth:`stop`, exited at all), with the end of its log."""
        for i, process in enumerate(self.processes):
            code = process.poll() if process is not None else None
            if codes is not None:
                code = codes[i] if codes[i] != 0 else None
            if code is not None:
                lines = self.log_path(i).read_text(errors="replace").splitlines()
                return DaemonDied(f"node{i}", code, lines[-15:])
        return None

    def evaluate(self, i: int) -> tuple[float, int]:
        """Accuracy of node ``i``'s checkpointed model, and its local steps."""
        config = load_config(self.configs[i])
        trainer = build_trainer(config)
        trainer.set_params(read_params(self.state_dir(i)))
        return trainer.evaluate()["accuracy"], self._steps(i)

    def _steps(self, i: int) -> int:
        return read_counters(self.state_dir(i)).get("steps", 0)

    def local_only(self, i: int, steps: int) -> float:
        """The same trainer on the same shard, trained alone for ``steps``."""
        trainer = build_trainer(load_config(self.configs[i]))
        trainer.train(steps)
        return trainer.evaluate()["accuracy"]


def _live_table(
    swarm: LocalSwarm, statuses: list[dict[str, Any] | None], remaining: float
) -> Table:
    table = Table(
        title=f"gossipfl demo: {len(statuses)} daemons on 127.0.0.1, {remaining:.0f} s left"
    )
    for column in ("node", "rounds", "exchanges", "answered", "peers", "MB out", "accuracy"):
        table.add_column(column, justify="right" if column != "node" else "left")
    for i, status in enumerate(statuses):
        if status is None:
            table.add_row(f"node{i}", "starting…", "", "", "", "", "")
            continue
        counters = status["counters"]
        live = sum(1 for p in status["peers"] if p["present"])
        accuracy = status["metrics"].get("accuracy")
        table.add_row(
            f"node{i}",
            str(counters["rounds"]),
            str(counters["exchanges"]),
            str(counters["responded"]),
            str(live),
            f"{status['bytes_sent'] / 1e6:.1f}",
            "" if accuracy is None else f"{accuracy:.3f}",
        )
    return table


class Stopped(BaseException):
    """The demo was told to stop (SIGTERM, as ``timeout``, a supervisor or
    a CI runner sends it).  Like KeyboardInterrupt, no ``except Exception``
    may swallow it."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


@dataclass(frozen=True)
class DaemonDied:
    node: str
    code: int
    log_tail: list[str]


def run_demo(peers: int = 4, duration: float = 60.0, root: Path | None = None) -> int:
    console = Console()
    root = root or Path(tempfile.mkdtemp(prefix="gossipfl-demo-"))
    console.print(f"creating a swarm of {peers} nodes in {root} …")
    swarm = LocalSwarm.create(root, peers, trainer_options=DEMO_TRAINER_OPTIONS, gossip=DEMO_GOSSIP)
    return demo_swarm(swarm, duration, console)


def demo_swarm(swarm: LocalSwarm, duration: float, console: Console) -> int:
    """Run ``swarm``'s daemons for ``duration`` seconds with a live table,
    then print the summary.  Returns the exit code: 0 only if every daemon
    ran to the end and beat training alone; 1 if a daemon died (named, with
    the end of its log) or one did not beat training alone; 130 on Ctrl-C
    and 143 on SIGTERM, after stopping every daemon either way."""
    peers = len(swarm.configs)
    statuses: list[dict[str, Any] | None] = [None] * peers
    died: DaemonDied | None = None
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        swarm.start()
        # Wall clock on purpose: this loop supervises real processes for a
        # real duration; the nodes themselves read time only through trio.
        end = time.monotonic() + duration
        with Live(
            _live_table(swarm, statuses, duration), console=console, refresh_per_second=2
        ) as live:
            while (left := end - time.monotonic()) > 0 and died is None:
                time.sleep(min(1.0, left))
                for i in range(peers):
                    statuses[i] = swarm.status(i) or statuses[i]
                live.update(_live_table(swarm, statuses, max(0.0, end - time.monotonic())))
                died = swarm.first_dead()
    except (KeyboardInterrupt, Stopped) as exc:
        console.print("stopping the daemons (each writes a final checkpoint) …")
        with contextlib.suppress(KeyboardInterrupt, Stopped):
            swarm.stop()
        console.print(f"interrupted; state and logs are in {swarm.root}")
        return 143 if isinstance(exc, Stopped) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print("stopping the daemons (each writes a final checkpoint) …")
    codes = swarm.stop()
    died = died or swarm.first_dead(codes)
    if died is not None:
        console.print(
            f"[red]{died.node} exited with code {died.code} before the demo ended; "
            f"the end of its log ({swarm.root}/{died.node}/node.log):[/red]"
        )
        for line in died.log_tail:
            console.print(line, markup=False, highlight=False)
        return 1
    return _summary(console, swarm, statuses)


def _summary(console: Console, swarm: LocalSwarm, statuses: list[dict[str, Any] | None]) -> int:
    table = Table(title="summary: gossip vs. the same trainer alone on the same data and steps")
    for column in ("node", "local steps", "exchanges", "gossip accuracy", "alone accuracy", "gain"):
        table.add_column(column, justify="right" if column != "node" else "left")
    beaten = 0
    for i in range(len(swarm.configs)):
        accuracy, steps = swarm.evaluate(i)
        alone = swarm.local_only(i, steps)
        beaten += accuracy > alone
        status = statuses[i]
        exchanges = status["counters"]["exchanges"] if status else 0
        table.add_row(
            f"node{i}",
            str(steps),
            str(exchanges),
            f"{accuracy:.3f}",
            f"{alone:.3f}",
            f"{(accuracy - alone) * 100:+.1f} pt",
        )
    console.print(table)
    sent = sum(s["bytes_sent"] for s in statuses if s)
    dim = read_params(swarm.state_dir(0)).size
    exchanges = sum(s["counters"]["exchanges"] for s in statuses if s)
    dense = exchanges * 2 * dim * 4
    console.print(
        f"bytes sent by all nodes: {sent / 1e6:.1f} MB; dense gossip would have sent "
        f"{dense / 1e6:.1f} MB for the same {exchanges} exchanges ({sent / max(dense, 1):.1%})."
    )
    console.print(f"{beaten}/{len(swarm.configs)} nodes beat training alone.")
    console.print(
        f"state (checkpoints) and logs: {swarm.root}/node*/state, {swarm.root}/node*/node.log"
    )
    return 0 if beaten == len(swarm.configs) else 1


def reap(process: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """``process``'s exit code, once it exits, or once killed if it has not
    within ``timeout`` seconds; ``None`` for no process."""
    if process is None:
        return None
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
