"""Trainer plug-in API and the built-in trainers (scikit-learn's digits)."""

from gossipfl.trainers.api import Trainer, TrainerSpec
from gossipfl.trainers.loader import TrainerError, load_trainer

__all__ = ["Trainer", "TrainerError", "TrainerSpec", "load_trainer"]
