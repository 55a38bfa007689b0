"""The state seam: where a node keeps its checkpoints and serves its status.

The daemon's :class:`FileStateStore` writes atomic checkpoints into
``state_dir`` (from a worker thread) and answers ``gossipfl status`` on a
control socket there; :class:`MemoryStateStore` keeps them in memory for
in-process swarms.  Either way the node takes the snapshot itself, on its
trio thread, so it never mixes two moments of a model that merges are
changing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import structlog
import trio

from gossipfl.node.checkpoint import Checkpoint, Identity, load_checkpoint, save_checkpoint
from gossipfl.transport.refusals import LineThrottle

CONTROL_SOCKET = "control.sock"
LOCK_FILE = "lock"


class StateDirError(Exception):
    """The state dir cannot be used: another daemon holds it, or it cannot
    be created."""


log = structlog.get_logger("gossipfl.node")


@dataclass
class Counters:
    rounds: int = 0
    steps: int = 0
    exchanges: int = 0  # initiated, merged on both sides
    responded: int = 0  # merged as responder (the initiator committed)
    half_merges: int = 0  # initiated and merged here, commit not delivered
    failed_exchanges: int = 0  # initiated, nothing merged
    busy: int = 0  # a partner answered busy
    diverged: int = 0  # training rounds refused: they made the model non-finite
    checkpoints: int = 0


@dataclass
class NodeStatus:
    node_id: str
    name: str
    uptime_s: float
    counters: dict[str, int]
    bytes_sent: int
    bytes_received: int
    metrics: dict[str, float]
    peers: list[dict[str, Any]] = field(default_factory=list)
    # What the daemon holds right now (trio tasks, connections it dialled):
    # a leak shows as a count that only grows (bench/soak.py).
    runtime: dict[str, int] = field(default_factory=dict)


StatusSource = Callable[[], NodeStatus]


class StateStore(Protocol):
    """Keeps one node's checkpoints and serves its status."""

    def load(self, identity: Identity) -> Checkpoint | None:
        """The last checkpoint, or ``None`` if there is none.  Raises
        :class:`~gossipfl.node.checkpoint.CheckpointError` for one that is
        corrupt or belongs to another swarm, trainer or model."""
        ...

    async def save(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` (the node's own snapshot; not modified).
        Atomic: a crash leaves the previous one or this one.  Raises
        ``OSError`` when it cannot be written; the previous one then stands."""
        ...

    async def serve_status(
        self, status: StatusSource, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Answer status requests with ``status()`` until cancelled."""
        ...


class MemoryStateStore:
    """Checkpoints in memory (the last one, and how many were saved)."""

    def __init__(self) -> None:
        self.last: Checkpoint | None = None
        self.saved = 0

    def load(self, identity: Identity) -> Checkpoint | None:
        return self.last

    async def save(self, checkpoint: Checkpoint) -> None:
        self.last = checkpoint
        self.saved += 1

    async def serve_status(
        self, status: StatusSource, *, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        await trio.sleep_forever()


class FileStateStore:
    """``state_dir/checkpoint.npz`` and the control socket beside it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock: int | None = None

    def claim(self) -> None:
        """Make the state dir ours: create it private (0700: it holds the
        model and the control socket) and lock it for this process, so a
        second daemon on the same dir refuses to start instead of taking
        over the control socket.  The lock goes with the process.

        Raises :class:`StateDirError`."""
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.state_dir, 0o700)
            fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateDirError(f"cannot use state dir {self.state_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateDirError(f"cannot lock {self.state_dir}: {exc.strerror}") from None
            raise StateDirError(
                f"{self.state_dir} is in use by another gossipfl daemon (pid {holder}); "
                "stop it, or give this node another [node] state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def load(self, identity: Identity) -> Checkpoint | None:
        return load_checkpoint(self.state_dir, identity)

    async def save(self, checkpoint: Checkpoint) -> None:
        await trio.to_thread.run_sync(save_checkpoint, self.state_dir, checkpoint)

    async def serve_status(
        self, status: StatusSource, *, task_status: trio.TaskStatus[None]
    ) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / CONTROL_SOCKET
        if path.exists():
            path.unlink()
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(path))
        os.chmod(path, 0o600)  # bound, not yet listening: no window for others
        sock.listen(8)
        listener = trio.SocketListener(sock)
        task_status.started()
        errors = LineThrottle(trio.current_time)  # a line a minute, counted
        try:
            async with listener:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:  # out of file descriptors, say: wait, go on
                        held = errors.admit("accept")
                        if held is not None:
                            log.warning("status_socket_error", reason=str(exc), failures=held + 1)
                        await trio.sleep(0.1)
                        continue
                    payload = json.dumps(_fields(status())).encode() + b"\n"
                    # A client that goes away early must not stop the node.
                    with trio.move_on_after(2), contextlib.suppress(trio.BrokenResourceError):
                        await stream.send_all(payload)
                    await trio.aclose_forcefully(stream)
        finally:
            path.unlink(missing_ok=True)


def _fields(status: NodeStatus) -> dict[str, Any]:
    """``status`` as a dict, shallow: its lists and dicts are built fresh
    for each request, and ``dataclasses.asdict`` deep-copied them (6 ms for
    a table of 450 peers, with the node's loop stalled meanwhile; a flood
    of fake mDNS records makes tables that big)."""
    return {f.name: getattr(status, f.name) for f in fields(status)}


def read_status(state_dir: Path, timeout_s: float = 5.0) -> dict[str, Any]:
    """Ask the daemon whose state is in ``state_dir`` for its status."""
    path = state_dir / CONTROL_SOCKET
    if not path.exists():
        raise FileNotFoundError(f"no running daemon: {path} does not exist")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except ConnectionRefusedError:
            raise FileNotFoundError(f"no daemon answers on {path} (stale socket?)") from None
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data: dict[str, Any] = json.loads(b"".join(chunks))
    return data
