"""``digits-logreg``: softmax regression in numpy.  Small (650 parameters)
and fast, for large simulated swarms."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gossipfl.trainers.api import TrainerSpec
from gossipfl.trainers.digits import (
    NUM_CLASSES,
    NUM_FEATURES,
    BatchSampler,
    learning_rate,
    load_shard,
    node_rng,
    parse_options,
)

_OPTIONS = {"partition", "alpha", "batch_size", "lr", "lr_decay_steps"}


def _softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


class DigitsLogReg:
    def __init__(self, spec: TrainerSpec) -> None:
        self._options = parse_options(spec.options, _OPTIONS)
        self._shard = load_shard(spec, self._options)
        dim = NUM_FEATURES * NUM_CLASSES + NUM_CLASSES
        init = np.random.default_rng([spec.seed, 0x1061]).normal(0.0, 0.01, dim)
        self._flat = init.astype(np.float32)
        self._sampler = BatchSampler(
            self._shard.y_train.size, self._options.batch_size, node_rng(spec, 1)
        )
        self._steps = 0

    def _weights(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        cut = NUM_FEATURES * NUM_CLASSES
        return self._flat[:cut].reshape(NUM_FEATURES, NUM_CLASSES), self._flat[cut:]

    def get_params(self) -> npt.NDArray[np.float32]:
        return self._flat.copy()

    def set_params(self, params: npt.NDArray[np.float32]) -> None:
        if params.shape != self._flat.shape:
            raise ValueError(f"expected {self._flat.size} parameters, got {params.size}")
        self._flat[:] = params

    def train(self, steps: int) -> dict[str, float]:
        weights, bias = self._weights()
        loss = 0.0
        for _ in range(steps):
            batch = self._sampler.next()
            x, y = self._shard.x_train[batch], self._shard.y_train[batch]
            probs = _softmax(x @ weights + bias)
            loss = float(-np.log(probs[np.arange(y.size), y] + 1e-12).mean())
            probs[np.arange(y.size), y] -= 1.0
            probs /= y.size
            lr = np.float32(learning_rate(self._options, self._steps))
            weights -= lr * (x.T @ probs)
            bias -= lr * probs.sum(axis=0)
            self._steps += 1
        return {"loss": loss}

    def evaluate(self) -> dict[str, float]:
        weights, bias = self._weights()
        probs = _softmax(self._shard.x_test @ weights + bias)
        y = self._shard.y_test
        return {
            "accuracy": float((probs.argmax(axis=1) == y).mean()),
            "loss": float(-np.log(probs[np.arange(y.size), y] + 1e-12).mean()),
        }
