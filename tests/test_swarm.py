"""A whole swarm of production nodes in one process, in virtual time: it
learns, and one seed gives one result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simnet.swarm import SwarmResult, SwarmSpec, local_only_accuracy, make_identities, run_swarm

SPEC = SwarmSpec(
    peers=16,
    trainer="digits-logreg",
    trainer_options={"partition": "dirichlet", "alpha": 0.5},
    gossip={"density": 0.1},
    duration_s=15.0,
    step_cost_s=0.05,
    seed=7,
    tls=True,
)


@pytest.fixture(scope="module")
def runs() -> tuple[SwarmResult, SwarmResult]:
    return run_swarm(SPEC), run_swarm(SPEC)


def test_every_node_beats_training_alone_at_equal_steps(
    runs: tuple[SwarmResult, SwarmResult],
) -> None:
    result, _ = runs
    assert result.virtual_time_s == pytest.approx(SPEC.duration_s)
    for index, node in enumerate(result.nodes):
        steps = node.counters["steps"]
        assert steps > 200
        assert node.counters["exchanges"] > 50
        assert node.counters["failed_exchanges"] == 0
        alone = local_only_accuracy(SPEC, index, steps)
        assert node.accuracy > alone, (node.name, node.accuracy, alone)


def test_one_seed_gives_bit_identical_models_and_counters(
    runs: tuple[SwarmResult, SwarmResult],
) -> None:
    first, second = runs
    for a, b in zip(first.nodes, second.nodes, strict=True):
        assert a.node_id == b.node_id
        assert a.counters == b.counters
        assert (a.bytes_sent, a.bytes_received) == (b.bytes_sent, b.bytes_received)
        assert np.array_equal(a.params, b.params)
    # and it is not trivially so: the nodes hold different models
    assert not np.array_equal(first.nodes[0].params, first.nodes[1].params)


def test_identities_without_files_have_the_ids_of_the_real_ones(tmp_path: Path) -> None:
    """A run without TLS writes no keys, yet its nodes keep the node ids
    (and so the partner choices and results) they have with TLS."""
    real = make_identities(tmp_path / "tls", 3, seed=7)
    bare = make_identities(tmp_path / "plain", 3, seed=7, files=False)
    assert [i.node_id for i in bare] == [i.node_id for i in real]
    assert len({i.node_id for i in real}) == 3
    assert not bare[0].key_path.exists()
