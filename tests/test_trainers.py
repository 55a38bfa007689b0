"""Built-in trainers and the plug-in loader."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from gossipfl import PluginError, Trainer, TrainerSpec
from gossipfl.trainers import TrainerError, load_trainer
from gossipfl.trainers.digits import dirichlet_partition, iid_partition

BUILT_INS = ["digits-mlp", "digits-logreg"]


@pytest.mark.parametrize("name", BUILT_INS)
def test_every_node_starts_from_the_same_model_given_the_seed(name: str) -> None:
    def initial(seed: int, index: int) -> np.ndarray:
        spec = TrainerSpec(
            options={"partition": "dirichlet"}, seed=seed, node_index=index, num_nodes=4
        )
        return load_trainer(name, spec).get_params()

    first = initial(3, 0)
    assert first.dtype == np.float32
    assert first.ndim == 1
    assert np.array_equal(first, initial(3, 3))
    assert not np.array_equal(first, initial(4, 0))


@pytest.mark.parametrize("name", BUILT_INS)
def test_training_on_local_data_beats_the_initial_model(name: str) -> None:
    trainer = load_trainer(name, TrainerSpec(seed=1, node_index=0, num_nodes=2))
    assert isinstance(trainer, Trainer)
    before = trainer.evaluate()["accuracy"]
    trainer.train(150)
    after = trainer.evaluate()
    assert after["accuracy"] > max(0.8, before + 0.5)
    assert after["loss"] > 0


@pytest.mark.parametrize("name", BUILT_INS)
def test_set_params_replaces_the_model(name: str) -> None:
    trainer = load_trainer(name, TrainerSpec(seed=1))
    params = np.random.default_rng(0).standard_normal(trainer.get_params().size).astype(np.float32)
    trainer.set_params(params)
    assert np.array_equal(trainer.get_params(), params)
    with pytest.raises(ValueError, match="parameters"):
        trainer.set_params(params[:-1])


@pytest.mark.parametrize("partition", ["iid", "dirichlet"])
def test_a_swarm_larger_than_the_data_set_still_trains(partition: str) -> None:
    """Defect: with 3000 simulated nodes on 1,437 training images, half the
    nodes got no data: they never learned, and reported a NaN loss."""
    spec = TrainerSpec(options={"partition": partition}, seed=0, node_index=2999, num_nodes=3000)
    trainer = load_trainer("digits-logreg", spec)
    before = trainer.get_params()
    metrics = trainer.train(5)
    assert np.isfinite(metrics["loss"])
    assert not np.array_equal(trainer.get_params(), before)


def test_iid_partition_is_disjoint_and_covers_everything() -> None:
    parts = iid_partition(1000, 7, np.random.default_rng(0))
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(1000))
    assert max(p.size for p in parts) - min(p.size for p in parts) <= 1


@pytest.mark.parametrize("alpha", [0.1, 0.5, 100.0])
def test_dirichlet_partition_is_disjoint_and_skews_labels_by_alpha(alpha: float) -> None:
    labels = np.repeat(np.arange(10), 100)
    parts = dirichlet_partition(labels, 20, alpha, np.random.default_rng(0))
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(1000))
    assert min(p.size for p in parts) >= 8
    top_share = np.mean([np.bincount(labels[p], minlength=10).max() / p.size for p in parts])
    if alpha == 0.1:
        assert top_share > 0.5
    if alpha == 100.0:
        assert top_share < 0.3


def test_nodes_of_one_swarm_get_disjoint_shards_and_share_the_test_set() -> None:
    from gossipfl.trainers.digits import DigitsOptions, load_shard

    shards = [
        load_shard(TrainerSpec(seed=5, node_index=i, num_nodes=3), DigitsOptions())
        for i in range(3)
    ]
    rows = [{row.tobytes() for row in shard.x_train} for shard in shards]
    assert not rows[0] & rows[1]
    assert np.array_equal(shards[0].x_test, shards[2].x_test)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"learning_rate": 0.1}, "unknown trainer option 'learning_rate'"),
        ({"lr": "fast"}, "'lr' must be float"),
        ({"partition": "zipf"}, "'iid' or 'dirichlet'"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, object], message: str) -> None:
    with pytest.raises(TrainerError, match=message) as info:
        load_trainer("digits-logreg", TrainerSpec(options=options))
    assert "digits-logreg" in str(info.value)


def test_unknown_trainer_lists_the_installed_ones() -> None:
    with pytest.raises(PluginError, match="no gossipfl.trainers plug-in named 'resnet'") as info:
        load_trainer("resnet", TrainerSpec())
    assert "digits-logreg, digits-mlp" in str(info.value)


def _install_fake_plugin(root: Path, name: str, module_source: str, target: str) -> None:
    (root / "fake_trainer_mod.py").write_text(textwrap.dedent(module_source))
    dist = root / "fake_trainer-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-trainer\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[gossipfl.trainers]\n{name} = fake_trainer_mod:{target}\n"
    )


def test_a_plugin_that_fails_to_import_is_named_with_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_plugin(tmp_path, "broken", "import no_such_module_here\n", "factory")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        PluginError, match="'broken' .* failed to load: ModuleNotFoundError"
    ) as info:
        load_trainer("broken", TrainerSpec())
    assert "digits-mlp" in str(info.value)


def test_a_plugin_that_breaks_the_contract_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = """
        import numpy as np

        class Half:
            def __init__(self, spec): pass
            def get_params(self): return np.zeros((2, 2))
            def set_params(self, params): pass
            def train(self, steps): return {}
            def evaluate(self): return {}
    """
    _install_fake_plugin(tmp_path, "half", source, "Half")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TrainerError, match="'half': get_params\\(\\) must return a 1-D float32"):
        load_trainer("half", TrainerSpec())
