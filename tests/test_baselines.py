"""Every registered baseline trains and evaluates on a tiny 3-experience synthetic stream."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compound_fer.errors import ConfigError
from compound_fer.training.registry import available, make_strategy

BASELINES = ("naive", "lwf", "ewc", "icarl", "replay", "herding", "gdumb", "joint")


class TinyFER(nn.Module):
    """Stand-in for models.FERModel: trunk, tail, growing head, features(x), feature_dim."""

    def __init__(self, in_dim: int = 8, hidden: int = 16, initial: int = 2) -> None:
        super().__init__()
        from avalanche.models import IncrementalClassifier

        self.trunk = nn.Identity()
        self.tail = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.head = IncrementalClassifier(hidden, initial_out_features=initial)
        self.feature_dim = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def blobs(n_per_class: int, *, n_classes: int = 6, dim: int = 8, seed: int = 0):
    centers = torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([centers[c] + torch.randn(n_per_class, dim, generator=g) for c in range(n_classes)])
    return x, torch.arange(n_classes).repeat_interleave(n_per_class)


def _dataset(x, y):
    ds = torch.utils.data.TensorDataset(x, y)
    ds.targets = y.tolist()
    return ds


@pytest.fixture(scope="module")
def stream():
    from avalanche.benchmarks import nc_benchmark

    return nc_benchmark(
        _dataset(*blobs(20)), _dataset(*blobs(10, seed=1)), n_experiences=3, task_labels=False, seed=0,
        fixed_class_order=list(range(6)), class_ids_from_zero_from_first_exp=True,
    )


def test_all_baselines_registered():
    entries = available()
    for name in BASELINES:
        assert name in entries, name
    assert entries["replay"].uses_memory and not entries["naive"].uses_memory


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_runs_three_experiences(name, stream):
    from compound_fer.evaluation.step_plugin import StepPredictionsPlugin

    torch.manual_seed(0)
    plugin = StepPredictionsPlugin()
    strategy = make_strategy(
        name, model=TinyFER(), plugins=[plugin], train_epochs=1, train_mb_size=8, eval_mb_size=64,
        lr=0.01, mem_size=40,
    )
    assert strategy.eval_mb_size == 64
    for i, exp in enumerate(stream.train_stream):
        strategy.train(exp)
        strategy.eval(stream.test_stream[: i + 1])
    acc = plugin.record.step_accuracies()
    assert len(acc) == 3
    assert all(0.0 <= a <= 1.0 for a in acc)
    # After step 0 every method has learned two well-separated blobs.
    assert acc[0] > 0.6, acc
    # The record's final row covers all classes of the three experiences.
    assert plugin.record.seen_classes(2) == [0, 1, 2, 3, 4, 5]


def test_joint_keeps_old_classes_better_than_naive(stream):
    """The upper bound must actually beat fine-tuning on the old classes (behaviour, not shape)."""
    from compound_fer.evaluation.step_plugin import StepPredictionsPlugin

    finals = {}
    for name in ("naive", "joint"):
        torch.manual_seed(0)
        plugin = StepPredictionsPlugin()
        s = make_strategy(name, model=TinyFER(), plugins=[plugin], train_epochs=3, train_mb_size=8, lr=0.01)
        for i, exp in enumerate(stream.train_stream):
            s.train(exp)
            s.eval(stream.test_stream[: i + 1])
        finals[name] = plugin.record.to_dict()["old_class_accuracy"][-1]
    assert finals["joint"] > finals["naive"] + 0.3, finals


def test_options_are_checked():
    with pytest.raises(ConfigError, match="optimizer"):
        make_strategy("naive", model=TinyFER(), optimizer="rmsprop-ish")
    with pytest.raises(ConfigError, match="ewc_mode"):
        make_strategy("ewc", model=TinyFER(), ewc_mode="sideways")
    with pytest.raises(ConfigError, match="features"):
        make_strategy("icarl", model=nn.Linear(8, 2))


def test_lwf_reads_extra_options():
    s = make_strategy("lwf", model=TinyFER(), alpha=0.5, temperature=3.0)
    lwf = [p for p in s.plugins if type(p).__name__ == "LwFPlugin"][0]
    assert lwf.lwf.alpha == 0.5 and lwf.lwf.temperature == 3.0
