"""The compute seam: where a node's trainer runs.

Trainers are synchronous (DESIGN.md section 6).  The daemon runs them in a
worker thread so the node keeps answering peers meanwhile; an in-process
swarm runs them inline and then charges the modelled time on the (virtual)
clock, so peers are answered from the pre-training model for exactly as
long as the step would take, as in the daemon.
"""

from __future__ import annotations

from typing import Protocol

import trio

from gossipfl.compress.codec import FloatArray
from gossipfl.trainers import Trainer

Metrics = dict[str, float]


class TrainerHost(Protocol):
    """Runs one node's trainer.  Calls come one at a time from the node."""

    def initial_params(self) -> FloatArray:
        """The trainer's model before any training: the swarm's shared
        initial model.  Called once, before anything else."""
        ...

    async def train(self, params: FloatArray, steps: int) -> tuple[Metrics, FloatArray]:
        """Run ``steps`` optimizer steps starting from ``params``; return the
        trainer's metrics and the trained model as a new array.  ``params``
        is only read, and the caller must not change it until this returns.
        Cancellation may wait for a step in progress; the result is then
        dropped."""
        ...

    async def evaluate(self, params: FloatArray) -> Metrics:
        """The trainer's held-out metrics of ``params`` (only read)."""
        ...


class ThreadedTrainerHost:
    """The daemon's host: each call runs in a worker thread."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def initial_params(self) -> FloatArray:
        return self.trainer.get_params()

    async def train(self, params: FloatArray, steps: int) -> tuple[Metrics, FloatArray]:
        return await trio.to_thread.run_sync(_train, self.trainer, params, steps)

    async def evaluate(self, params: FloatArray) -> Metrics:
        return await trio.to_thread.run_sync(_evaluate, self.trainer, params)


class InlineTrainerHost:
    """The in-process host: runs the trainer on the trio thread, then
    sleeps ``steps * step_cost_s / speed`` of trio time.

    Under ``trio.testing.MockClock`` that sleep is virtual, so a swarm of
    stragglers and fast nodes runs as fast as the CPU allows.  (A worker
    thread would let virtual time race ahead while it ran.)  Evaluation is
    charged ``evaluate_cost_s``.
    """

    def __init__(
        self,
        trainer: Trainer,
        *,
        step_cost_s: float,
        speed: float = 1.0,
        evaluate_cost_s: float = 0.0,
    ) -> None:
        if step_cost_s < 0 or speed <= 0 or evaluate_cost_s < 0:
            raise ValueError("need step_cost_s >= 0, speed > 0, evaluate_cost_s >= 0")
        self.trainer = trainer
        self.step_cost_s = step_cost_s
        self.speed = speed
        self.evaluate_cost_s = evaluate_cost_s

    def initial_params(self) -> FloatArray:
        return self.trainer.get_params()

    async def train(self, params: FloatArray, steps: int) -> tuple[Metrics, FloatArray]:
        result = _train(self.trainer, params, steps)
        await trio.sleep(steps * self.step_cost_s / self.speed)
        return result

    async def evaluate(self, params: FloatArray) -> Metrics:
        metrics = _evaluate(self.trainer, params)
        await trio.sleep(self.evaluate_cost_s)
        return metrics


def _train(trainer: Trainer, params: FloatArray, steps: int) -> tuple[Metrics, FloatArray]:
    trainer.set_params(params)
    metrics = trainer.train(steps)
    return metrics, trainer.get_params()


def _evaluate(trainer: Trainer, params: FloatArray) -> Metrics:
    trainer.set_params(params)
    return trainer.evaluate()
