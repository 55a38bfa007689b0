"""A gossipfl trainer plug-in: classify three interleaved 2-D spirals.

The data is generated, so nothing is downloaded: every node draws the same
spirals from the swarm seed and keeps the slice for its ``node_index``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from gossipfl import TrainerSpec

CLASSES = 3


def spirals(
    seed: int, per_class: int = 300
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    points, labels = [], []
    for label in range(CLASSES):
        radius = np.linspace(0.05, 1.0, per_class)
        angle = radius * 4.0 + label * 2 * np.pi / CLASSES + rng.normal(0, 0.15, per_class)
        points.append(np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1))
        labels.append(np.full(per_class, label))
    x, y = np.concatenate(points).astype(np.float32), np.concatenate(labels).astype(np.int64)
    order = rng.permutation(y.size)
    return x[order], y[order]


class SpiralsTrainer:
    """``[trainer]`` options: ``hidden`` (default 32), ``lr`` (0.2), ``batch_size`` (32)."""

    def __init__(self, spec: TrainerSpec) -> None:
        options = dict(spec.options)
        self.hidden = int(options.pop("hidden", 32))
        self.lr = float(options.pop("lr", 0.2))
        self.batch_size = int(options.pop("batch_size", 32))
        if options:
            raise ValueError(f"unknown options {sorted(options)}; expected hidden, lr, batch_size")
        x, y = spirals(spec.seed)
        cut = y.size // 5  # the first fifth is the shared test set
        self.x_test, self.y_test = torch.from_numpy(x[:cut]), torch.from_numpy(y[:cut])
        x_train, y_train = x[cut:], y[cut:]
        if spec.node_index is not None and spec.num_nodes:
            x_train = x_train[spec.node_index :: spec.num_nodes]
            y_train = y_train[spec.node_index :: spec.num_nodes]
        self.x_train, self.y_train = torch.from_numpy(x_train), torch.from_numpy(y_train)
        generator = torch.Generator().manual_seed(spec.seed)  # same initial model on every node
        self.model = torch.nn.Sequential(
            torch.nn.Linear(2, self.hidden), torch.nn.Tanh(),
            torch.nn.Linear(self.hidden, self.hidden), torch.nn.Tanh(),
            torch.nn.Linear(self.hidden, CLASSES),
        )  # fmt: skip
        with torch.no_grad():
            for parameter in self.model.parameters():
                parameter.uniform_(-0.5, 0.5, generator=generator)
        self.rng = np.random.default_rng(
            [spec.seed, -1 if spec.node_index is None else spec.node_index]
        )

    def get_params(self) -> npt.NDArray[np.float32]:
        return torch.nn.utils.parameters_to_vector(self.model.parameters()).detach().numpy().copy()

    def set_params(self, params: npt.NDArray[np.float32]) -> None:
        torch.nn.utils.vector_to_parameters(
            torch.from_numpy(params.copy()), self.model.parameters()
        )

    def train(self, steps: int) -> dict[str, float]:
        loss = torch.zeros(())
        for _ in range(steps):
            batch = torch.from_numpy(self.rng.integers(0, self.y_train.numel(), self.batch_size))
            loss = F.cross_entropy(self.model(self.x_train[batch]), self.y_train[batch])
            self.model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for parameter in self.model.parameters():
                    assert parameter.grad is not None
                    parameter -= self.lr * parameter.grad
        return {"loss": float(loss.detach())}

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            logits = self.model(self.x_test)
        return {
            "accuracy": float((logits.argmax(1) == self.y_test).float().mean()),
            "loss": float(F.cross_entropy(logits, self.y_test)),
        }
