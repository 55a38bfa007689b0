"""``digits-mlp``: a one-hidden-layer torch MLP on the digits.

The parameters live in one flat tensor and the layers are views of it, so
``get_params`` / ``set_params`` are single copies with no reshaping.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

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

_OPTIONS = {"partition", "alpha", "batch_size", "lr", "lr_decay_steps", "hidden"}


def _initial_params(seed: int, hidden: int) -> npt.NDArray[np.float32]:
    """torch's default Linear init (uniform in +-1/sqrt(fan_in)), drawn from
    numpy so it depends on ``seed`` alone, not on torch's global RNG."""
    rng = np.random.default_rng([seed, 0x3199])
    parts = []
    for fan_in, fan_out in ((NUM_FEATURES, hidden), (hidden, NUM_CLASSES)):
        bound = 1.0 / np.sqrt(fan_in)
        parts.append(rng.uniform(-bound, bound, fan_in * fan_out))  # weight
        parts.append(rng.uniform(-bound, bound, fan_out))  # bias
    return np.concatenate(parts).astype(np.float32)


class DigitsMLP:
    def __init__(self, spec: TrainerSpec) -> None:
        self._options = parse_options(spec.options, _OPTIONS)
        self._shard = load_shard(spec, self._options)
        self._hidden = self._options.hidden
        self._flat = torch.from_numpy(_initial_params(spec.seed, self._hidden)).requires_grad_()
        self._x_train = torch.from_numpy(self._shard.x_train)
        self._y_train = torch.from_numpy(self._shard.y_train)
        self._x_test = torch.from_numpy(self._shard.x_test)
        self._y_test = torch.from_numpy(self._shard.y_test)
        self._sampler = BatchSampler(
            self._shard.y_train.size, self._options.batch_size, node_rng(spec, 2)
        )
        self._steps = 0

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._hidden
        cut1 = NUM_FEATURES * h
        cut2 = cut1 + h
        cut3 = cut2 + h * NUM_CLASSES
        w1 = self._flat[:cut1].view(h, NUM_FEATURES)
        w2 = self._flat[cut2:cut3].view(NUM_CLASSES, h)
        hidden = F.relu(F.linear(x, w1, self._flat[cut1:cut2]))
        return F.linear(hidden, w2, self._flat[cut3:])

    def get_params(self) -> npt.NDArray[np.float32]:
        return self._flat.detach().numpy().copy()

    def set_params(self, params: npt.NDArray[np.float32]) -> None:
        if params.shape != tuple(self._flat.shape):
            raise ValueError(f"expected {self._flat.numel()} parameters, got {params.size}")
        with torch.no_grad():
            self._flat.copy_(torch.from_numpy(np.ascontiguousarray(params, dtype=np.float32)))

    def train(self, steps: int) -> dict[str, float]:
        loss = torch.zeros(())
        for _ in range(steps):
            batch = torch.from_numpy(self._sampler.next())
            loss = F.cross_entropy(self._forward(self._x_train[batch]), self._y_train[batch])
            (grad,) = torch.autograd.grad(loss, self._flat)
            with torch.no_grad():
                self._flat -= learning_rate(self._options, self._steps) * grad
            self._steps += 1
        return {"loss": float(loss.detach())}

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            logits = self._forward(self._x_test)
            return {
                "accuracy": float((logits.argmax(dim=1) == self._y_test).float().mean()),
                "loss": float(F.cross_entropy(logits, self._y_test)),
            }
