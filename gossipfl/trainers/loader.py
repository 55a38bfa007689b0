"""Building a trainer from its entry point name."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np

from gossipfl.plugins import TRAINERS, PluginError, load_plugin
from gossipfl.trainers.api import Trainer, TrainerSpec


class TrainerError(PluginError):
    """A trainer plug-in could not be built or breaks the Trainer contract."""


def load_trainer(name: str, spec: TrainerSpec) -> Trainer:
    """Build the trainer registered as ``name`` in ``gossipfl.trainers``.

    Raises :class:`PluginError` for an unknown or unloadable plug-in and
    :class:`TrainerError` when its factory fails or what it returns breaks
    the contract (for example, parameters that are not 1-D float32).
    """
    factory = cast(Callable[[TrainerSpec], object], load_plugin(TRAINERS, name))
    try:
        trainer = factory(spec)
    except Exception as exc:
        raise TrainerError(f"trainer {name!r} could not be created: {exc}") from exc
    if not isinstance(trainer, Trainer):
        raise TrainerError(
            f"trainer {name!r} returned {type(trainer).__name__}, which lacks "
            "get_params/set_params/train/evaluate"
        )
    params = trainer.get_params()
    if not (isinstance(params, np.ndarray) and params.ndim == 1 and params.dtype == np.float32):
        raise TrainerError(f"trainer {name!r}: get_params() must return a 1-D float32 numpy array")
    if params.size == 0:
        raise TrainerError(f"trainer {name!r}: the model has no parameters")
    return trainer
