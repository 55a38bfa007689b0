"""scikit-learn's bundled digits, split the same way on every node.

All nodes compute the same split from the swarm seed and keep their own
share: a held-out test set shared by everyone, and the training set
partitioned IID or by a Dirichlet draw over labels (non-IID) by
``node_index``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gossipfl.trainers.api import TrainerSpec

Features = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]
NUM_FEATURES = 64
NUM_CLASSES = 10
TEST_FRACTION = 0.2
# A Dirichlet draw can leave a node with (almost) no data; topping every node
# up to a few samples keeps every local trainer well defined.
MIN_SAMPLES = 8


@dataclass(frozen=True)
class DigitsShard:
    x_train: Features
    y_train: Labels
    x_test: Features
    y_test: Labels


@dataclass(frozen=True)
class DigitsOptions:
    partition: str = "iid"
    alpha: float = 0.5
    batch_size: int = 32
    lr: float = 0.1
    # Inverse-time decay: step t uses lr / (1 + t / lr_decay_steps); 0 keeps
    # lr constant.  Decay shrinks the drift between exchanges late in
    # training, which is what sparse exchanges are slowest to undo.
    lr_decay_steps: int = 0
    hidden: int = 64


def parse_options(options: dict[str, Any], allowed: set[str]) -> DigitsOptions:
    """Validate a ``[trainer]`` table; errors name the key and what was expected."""
    defaults = DigitsOptions()
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(f"unknown trainer option {key!r}; expected one of {sorted(allowed)}")
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValueError(f"trainer option {key!r} must be {expected.__name__}, got {value!r}")
        values[key] = value
    parsed = DigitsOptions(**values)
    if parsed.partition not in ("iid", "dirichlet"):
        raise ValueError(
            f"trainer option 'partition' must be 'iid' or 'dirichlet', got {parsed.partition!r}"
        )
    if parsed.alpha <= 0 or parsed.lr <= 0 or parsed.batch_size < 1 or parsed.hidden < 1:
        raise ValueError("trainer options alpha and lr must be > 0, batch_size and hidden >= 1")
    if parsed.lr_decay_steps < 0:
        raise ValueError("trainer option 'lr_decay_steps' must be >= 0")
    return parsed


def learning_rate(options: DigitsOptions, step: int) -> float:
    """The step size of local step number ``step`` (counted from 0)."""
    if options.lr_decay_steps == 0:
        return options.lr
    return options.lr / (1.0 + step / options.lr_decay_steps)


@functools.lru_cache(maxsize=8)
def _split(seed: int) -> tuple[Features, Labels, Features, Labels]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=seed % 2**32, stratify=y
    )
    return x_train, y_train, x_test, y_test


def iid_partition(num_samples: int, num_nodes: int, rng: np.random.Generator) -> list[Labels]:
    """Shuffled, near-equal shares of ``range(num_samples)``."""
    return [
        part.astype(np.int64) for part in np.array_split(rng.permutation(num_samples), num_nodes)
    ]


def dirichlet_partition(
    labels: Labels, num_nodes: int, alpha: float, rng: np.random.Generator
) -> list[Labels]:
    """Per class, proportions over nodes drawn from Dirichlet(``alpha``):
    small ``alpha`` gives each node few classes.  Every node then gets at
    least ``MIN_SAMPLES`` (taken from the largest shares) when there is
    enough data."""
    shares: list[list[int]] = [[] for _ in range(num_nodes)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        proportions = rng.dirichlet(np.full(num_nodes, alpha))
        cuts = (np.cumsum(proportions)[:-1] * members.size).astype(int)
        for node, part in enumerate(np.split(members, cuts)):
            shares[node].extend(part.tolist())
    floor = min(MIN_SAMPLES, labels.size // num_nodes)
    for node in range(num_nodes):
        while len(shares[node]) < floor:
            donor = max(range(num_nodes), key=lambda n: len(shares[n]))
            shares[node].append(shares[donor].pop())
    return [np.sort(np.array(share, dtype=np.int64)) for share in shares]


@functools.lru_cache(maxsize=4)
def _partition(seed: int, num_nodes: int, partition: str, alpha: float) -> tuple[Labels, ...]:
    """Every node's share of the training split.  Cached: a simulated swarm
    builds all its trainers in one process, and each would otherwise split
    the whole set again (a thousand nodes: a million array slices)."""
    y_train = _split(seed)[1]
    rng = np.random.default_rng([seed, num_nodes, 0xD161])
    if partition == "iid":
        parts = iid_partition(y_train.size, num_nodes, rng)
    else:
        parts = dirichlet_partition(y_train, num_nodes, alpha, rng)
    for part in parts:
        part.flags.writeable = False  # shared by every trainer of the run
    return tuple(parts)


def load_shard(spec: TrainerSpec, options: DigitsOptions) -> DigitsShard:
    """This node's training data and the shared test set.

    Without ``node_index`` (a real device) the node trains on the whole
    training split.
    """
    x_train, y_train, x_test, y_test = _split(spec.seed)
    if spec.node_index is None or spec.num_nodes is None:
        return DigitsShard(x_train, y_train, x_test, y_test)
    if not 0 <= spec.node_index < spec.num_nodes:
        raise ValueError(f"node_index {spec.node_index} outside 0..{spec.num_nodes - 1}")
    mine = _partition(spec.seed, spec.num_nodes, options.partition, options.alpha)[spec.node_index]
    if mine.size == 0:
        # More nodes than training images (a simulated swarm of thousands
        # on 1,437 digits): an empty shard would train on nothing and turn
        # the model into NaN.  Such a node gets a few images others have.
        mine = np.sort(node_rng(spec, 0x5A4E).choice(y_train.size, MIN_SAMPLES, replace=False))
    return DigitsShard(x_train[mine], y_train[mine], x_test, y_test)


class BatchSampler:
    """Minibatches without replacement within an epoch, from a per-node rng."""

    def __init__(self, size: int, batch_size: int, rng: np.random.Generator) -> None:
        self._size = size
        self._batch = min(batch_size, max(size, 1))
        self._rng = rng
        self._order = rng.permutation(size)
        self._pos = 0

    def next(self) -> npt.NDArray[np.int64]:
        if self._pos + self._batch > self._size:
            self._order = self._rng.permutation(self._size)
            self._pos = 0
        batch = self._order[self._pos : self._pos + self._batch]
        self._pos += self._batch
        return batch.astype(np.int64)


def node_rng(spec: TrainerSpec, salt: int) -> np.random.Generator:
    """Randomness private to one node (minibatch order), seeded reproducibly."""
    index = -1 if spec.node_index is None else spec.node_index
    return np.random.default_rng([spec.seed, index + 1, salt])
