"""A synchronous, round-based swarm in one process: the learning algorithm
with no networking and no clock.

Every round each node trains ``local_steps`` steps, then a random perfect
matching pairs the nodes and each pair runs one exchange through the real
compressors and byte codecs.  It answers "does the algorithm learn, and at
what cost in bytes" before any transport is involved.

What it leaves out, on purpose: the node itself.  There is no protocol
(no hello, busy, commit or bye), no clock, no network, no partner
selection (a random perfect matching instead), no concurrency (nobody
trains while answering), no failures, no late joiners.  Exchanges here
always commit; both halves merge at once.  :mod:`simnet.swarm` runs the
production node, with all of that, in virtual time; use it for anything
about how the deployed system behaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gossipfl.compress import (
    ValueDtype,
    decode_values,
    encode_values,
    exchange_k,
    merge,
    outgoing_values,
    record_training,
    value_size,
)
from gossipfl.plugins import load_compressor
from gossipfl.trainers import Trainer, TrainerSpec, load_trainer


@dataclass(frozen=True)
class RoundConfig:
    trainer: str = "digits-logreg"
    trainer_options: dict[str, Any] = field(default_factory=dict)
    peers: int = 16
    compressor: str = "topk-ef"
    density: float = 0.1
    value_dtype: ValueDtype = "float32"
    rounds: int = 100
    local_steps: int = 1
    seed: int = 0
    eval_every: int = 0  # 0: only at the end


@dataclass(frozen=True)
class Evaluation:
    round: int
    mean_accuracy: float
    min_accuracy: float
    accuracy_of_mean_model: float
    consensus_distance: float
    bytes_per_node: float


@dataclass(frozen=True)
class RoundResult:
    config: RoundConfig
    dim: int
    final: Evaluation
    history: list[Evaluation]
    exchanges: int


def dense_bytes_per_exchange(dim: int, dtype: ValueDtype = "float32") -> int:
    """What a dense exchange puts on the wire: the model, both ways."""
    return 2 * dim * value_size(dtype)


def node_trainer(name: str, options: dict[str, Any], seed: int, index: int, peers: int) -> Trainer:
    """Node ``index`` of ``peers``' trainer: its share of a built-in data set,
    the swarm's initial model from ``seed``."""
    spec = TrainerSpec(options=dict(options), seed=seed, node_index=index, num_nodes=peers)
    return load_trainer(name, spec)


class _Swarm:
    def __init__(self, config: RoundConfig) -> None:
        self.config = config
        self.trainers: list[Trainer] = [
            node_trainer(config.trainer, config.trainer_options, config.seed, i, config.peers)
            for i in range(config.peers)
        ]
        self.params = [t.get_params() for t in self.trainers]
        self.dim = self.params[0].size
        self.residuals = [np.zeros(self.dim, dtype=np.float32) for _ in self.trainers]
        self.compressor = load_compressor(config.compressor)
        self.rng = np.random.default_rng([config.seed, 0x5EED])
        self.bytes_sent = 0
        self.exchanges = 0

    def train(self) -> None:
        for i, trainer in enumerate(self.trainers):
            before = self.params[i]
            trainer.set_params(before)
            trainer.train(self.config.local_steps)
            after = trainer.get_params()
            record_training(self.residuals[i], before, after)
            self.params[i] = after

    def exchange(self, i: int, j: int) -> None:
        """One exchange over the real codecs; ``i`` initiates."""
        dtype = self.config.value_dtype
        k = exchange_k(self.compressor, self.dim, self.config.density, value_size(dtype))
        selection = self.compressor.select(self.residuals[i], k, self.rng)
        sent_i = outgoing_values(self.params[i], selection.indices, dtype)
        request = encode_values(sent_i, dtype)
        indices = self.compressor.resolve(selection.wire, self.dim, self.dim)
        seen_i = decode_values(request, indices.size, dtype)
        sent_j = outgoing_values(self.params[j], indices, dtype)
        reply = encode_values(sent_j, dtype)
        seen_j = decode_values(reply, selection.indices.size, dtype)
        merge(self.params[j], self.residuals[j], indices, sent_j, seen_i)
        merge(self.params[i], self.residuals[i], selection.indices, sent_i, seen_j)
        self.bytes_sent += len(selection.wire) + len(request) + len(reply)
        self.exchanges += 1

    def gossip(self) -> None:
        order = self.rng.permutation(self.config.peers)
        for a, b in zip(order[0::2], order[1::2], strict=False):
            self.exchange(int(a), int(b))

    def evaluate(self, round_: int) -> Evaluation:
        accuracies = []
        for trainer, params in zip(self.trainers, self.params, strict=True):
            trainer.set_params(params)
            accuracies.append(trainer.evaluate()["accuracy"])
        stacked = np.stack(self.params)
        mean_model = stacked.mean(axis=0)
        probe = self.trainers[0]
        probe.set_params(mean_model.astype(np.float32))
        mean_accuracy = probe.evaluate()["accuracy"]
        probe.set_params(self.params[0])
        consensus = float(((stacked - mean_model) ** 2).sum(axis=1).mean())
        return Evaluation(
            round=round_,
            mean_accuracy=float(np.mean(accuracies)),
            min_accuracy=float(np.min(accuracies)),
            accuracy_of_mean_model=mean_accuracy,
            consensus_distance=consensus,
            bytes_per_node=self.bytes_sent / self.config.peers,
        )


def run_rounds(
    config: RoundConfig, progress: Callable[[Evaluation], None] | None = None
) -> RoundResult:
    """Run ``config.rounds`` rounds and evaluate every node at the end (and
    every ``eval_every`` rounds when set)."""
    swarm = _Swarm(config)
    history: list[Evaluation] = []
    for round_ in range(1, config.rounds + 1):
        swarm.train()
        swarm.gossip()
        if config.eval_every and round_ % config.eval_every == 0 and round_ != config.rounds:
            history.append(swarm.evaluate(round_))
            if progress:
                progress(history[-1])
    final = swarm.evaluate(config.rounds)
    history.append(final)
    return RoundResult(config, swarm.dim, final, history, swarm.exchanges)
