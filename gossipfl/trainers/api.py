"""The trainer plug-in contract (DESIGN.md section 6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class TrainerSpec:
    """What a trainer factory is given.

    ``options`` is the ``[trainer]`` table of the node config (without
    ``name``); ``seed`` is swarm-wide, and the initial model must depend on
    it alone so that every node starts from the same weights.
    ``node_index`` / ``num_nodes`` are set in simulations and demos so a
    built-in data set can be partitioned, and are ``None`` on real devices.
    """

    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    data_dir: Path | None = None
    node_index: int | None = None
    num_nodes: int | None = None


@runtime_checkable
class Trainer(Protocol):
    """A local model and its data.  Synchronous: methods may take seconds of
    CPU, never see trio, and are called from one thread at a time."""

    def get_params(self) -> npt.NDArray[np.float32]:
        """A copy of the model as one 1-D float32 vector of fixed length."""
        ...

    def set_params(self, params: npt.NDArray[np.float32]) -> None:
        """Replace the model with ``params`` (same length as ``get_params``)."""
        ...

    def train(self, steps: int) -> dict[str, float]:
        """Run ``steps`` local optimizer steps; return metrics such as loss."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Metrics on held-out data; includes ``accuracy`` or ``loss``."""
        ...
