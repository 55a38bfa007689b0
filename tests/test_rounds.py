"""The algorithm learns: a small in-process swarm, no networking."""

from __future__ import annotations

import numpy as np

from gossipfl import TrainerSpec
from gossipfl.trainers import load_trainer
from simnet.rounds import RoundConfig, dense_bytes_per_exchange, run_rounds

OPTIONS = {"partition": "dirichlet", "alpha": 0.5, "lr": 0.2}


def _local_only_accuracy(peers: int, rounds: int) -> float:
    accuracies = []
    for i in range(peers):
        trainer = load_trainer(
            "digits-logreg", TrainerSpec(options=OPTIONS, node_index=i, num_nodes=peers)
        )
        trainer.train(rounds)
        accuracies.append(trainer.evaluate()["accuracy"])
    return float(np.mean(accuracies))


def test_sparse_gossip_beats_training_alone_on_non_iid_data() -> None:
    config = RoundConfig(
        trainer_options=OPTIONS, peers=8, compressor="topk-ef", density=0.1, rounds=150
    )
    result = run_rounds(config)
    alone = _local_only_accuracy(8, 150)
    assert result.final.mean_accuracy > alone + 0.15
    assert result.exchanges == 150 * 4
    # Sparse: well under a fifth of what dense gossip sends.
    dense = 150 * 4 * dense_bytes_per_exchange(result.dim) / 8
    assert result.final.bytes_per_node < 0.2 * dense


def test_one_seed_gives_one_result() -> None:
    config = RoundConfig(trainer_options=OPTIONS, peers=4, compressor="randk-shared", rounds=20)
    assert run_rounds(config).final == run_rounds(config).final


def test_dense_gossip_reaches_consensus() -> None:
    config = RoundConfig(
        trainer_options=OPTIONS, peers=8, compressor="dense", rounds=60, eval_every=20
    )
    result = run_rounds(config)
    assert [e.round for e in result.history] == [20, 40, 60]
    assert (
        result.final.consensus_distance
        < 0.1 * max(e.consensus_distance for e in result.history) + 0.05
    )
    assert result.final.min_accuracy > 0.8
