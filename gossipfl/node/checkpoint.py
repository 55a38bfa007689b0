"""Atomic checkpoints of a node's state: model, residual and counters.

One file, ``checkpoint.npz``: numpy arrays (no pickle) plus the metadata
as JSON bytes.  Written to a temporary file, fsynced, renamed over the old
one, and the folder fsynced: a crash at any moment leaves either the old
or the new checkpoint, never a mix.  Loading checks that the file is
intact (checksums) and belongs to this node's swarm, trainer and model, and
refuses it with a reason otherwise rather than silently starting over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

FORMAT: Final = 1
FILENAME: Final = "checkpoint.npz"


class CheckpointError(Exception):
    """A checkpoint is corrupt or belongs to another swarm, trainer or
    model; the message names the file and what does not match."""


@dataclass(frozen=True)
class Identity:
    """What a checkpoint must match to be restored."""

    swarm_id: str
    trainer: str
    dim: int
    initial_model_hash: str  # hex


@dataclass(frozen=True)
class Checkpoint:
    identity: Identity
    node_id: str
    params: npt.NDArray[np.float32]
    residual: npt.NDArray[np.float32]
    counters: dict[str, int]


def _digest(array: npt.NDArray[np.float32]) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


def save_checkpoint(state_dir: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically; the previous one stands if it
    cannot be written.  Raises :class:`CheckpointError` for a model that
    is not finite (it would only crash the restart)."""
    if not (np.isfinite(checkpoint.params).all() and np.isfinite(checkpoint.residual).all()):
        raise CheckpointError("refusing to save NaN or infinite parameters")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "node_id": checkpoint.node_id,
        "swarm_id": checkpoint.identity.swarm_id,
        "trainer": checkpoint.identity.trainer,
        "dim": checkpoint.identity.dim,
        "initial_model_hash": checkpoint.identity.initial_model_hash,
        "params_sha256": _digest(checkpoint.params),
        "residual_sha256": _digest(checkpoint.residual),
        "counters": checkpoint.counters,
    }
    path = state_dir / FILENAME
    tmp = state_dir / f".{FILENAME}.tmp"
    try:
        # 0600: a model is the swarm's work, for this device's owner only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle,
                params=checkpoint.params.astype("<f4"),
                residual=checkpoint.residual.astype("<f4"),
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk: the previous checkpoint stands, whole
            tmp.unlink(missing_ok=True)
        raise
    folder = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def load_checkpoint(state_dir: Path, expected: Identity) -> Checkpoint | None:
    """The checkpoint in ``state_dir``, or ``None`` if there is none.

    Raises :class:`CheckpointError` for a corrupt or foreign one.
    """
    path = state_dir / FILENAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            params, residual = archive["params"], archive["residual"]
            meta: dict[str, Any] = json.loads(archive["meta"].tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{path} is corrupt ({type(exc).__name__}: {exc}); move it away to start fresh"
        ) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} has format {meta.get('format')!r}, this version reads {FORMAT}"
        )
    for key, want in (
        ("swarm_id", expected.swarm_id),
        ("trainer", expected.trainer),
        ("dim", expected.dim),
        ("initial_model_hash", expected.initial_model_hash),
    ):
        if meta.get(key) != want:
            raise CheckpointError(
                f"{path} belongs to another {key.replace('_', ' ')} ({meta.get(key)!r}, "
                f"this node has {want!r}); use another state_dir or move the file away"
            )
    if params.shape != (expected.dim,) or residual.shape != (expected.dim,):
        raise CheckpointError(f"{path} holds arrays of the wrong size")
    if _digest(params) != meta.get("params_sha256") or _digest(residual) != meta.get(
        "residual_sha256"
    ):
        raise CheckpointError(f"{path} is corrupt (checksum mismatch); move it away to start fresh")
    if not (np.isfinite(params).all() and np.isfinite(residual).all()):
        # Written by a version without value bounds, after a poisoned merge:
        # loading it would crash the node again at once, and on every restart.
        raise CheckpointError(
            f"{path} holds NaN or infinite parameters (a poisoned or diverged model); "
            "move it away to start fresh"
        )
    counters = meta.get("counters", {})
    if not isinstance(counters, dict) or not all(isinstance(v, int) for v in counters.values()):
        raise CheckpointError(f"{path} has malformed counters")
    node_id = str(meta.get("node_id", ""))
    return Checkpoint(
        expected, node_id, params.astype(np.float32), residual.astype(np.float32), counters
    )


def read_counters(state_dir: Path) -> dict[str, int]:
    """The counters saved in ``state_dir``'s checkpoint (not verified
    against the arrays: for reports, not for restoring)."""
    path = state_dir / FILENAME
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta: dict[str, Any] = json.loads(archive["meta"].tobytes())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {state_dir} ({FILENAME} missing)") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({type(exc).__name__}: {exc})") from None
    counters = meta.get("counters", {})
    return {str(k): int(v) for k, v in counters.items()} if isinstance(counters, dict) else {}


def read_params(state_dir: Path) -> npt.NDArray[np.float32]:
    """The model in ``state_dir``'s checkpoint, checksum-verified, for export."""
    path = state_dir / FILENAME
    try:
        with np.load(path, allow_pickle=False) as archive:
            params: npt.NDArray[np.float32] = archive["params"].astype(np.float32)
            meta: dict[str, Any] = json.loads(archive["meta"].tobytes())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {state_dir} ({FILENAME} missing)") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({type(exc).__name__}: {exc})") from None
    if _digest(params) != meta.get("params_sha256"):
        raise CheckpointError(f"{path} is corrupt (checksum mismatch)")
    return params
