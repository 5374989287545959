"""PSMR keeps exactly the top-m images by true-class logit, in grow and limit modes, as the reference."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from compound_fer.errors import ConfigError
from compound_fer.models import FERModel, GrowingHead
from compound_fer.training.predictive_sorting import (
    PredictiveSortingSelection,
    PSMRBuffer,
    PSMRPlugin,
    spread_order,
)


def _mlp(n_classes: int, seed: int = 0) -> FERModel:
    torch.manual_seed(seed)
    tail = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5))
    return FERModel(
        trunk=nn.Identity(),
        tail=tail,
        head=GrowingHead(in_features=16, num_classes=n_classes, dropout=0.3),
        feature_dim=16,
        target_layer=tail[0],
        freeze_bn=False,
    )


def _data(n_per_class=30, n_classes=5, seed=0):
    from avalanche.benchmarks.utils import as_classification_dataset
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat(n_per_class)
    x = torch.randn(n_classes, 8, generator=g)[y] * 2 + torch.randn(len(y), 8, generator=g)
    ds = TensorDataset(x, y)
    ds.targets = y.tolist()
    return x, y, as_classification_dataset(ds)


def _brute_top(model, x, y, m, score="logit"):
    """Score one image at a time, then a full Python sort: the m best indices."""
    model.eval()
    with torch.no_grad():
        vals = []
        for i in range(len(x)):
            z = model(x[i : i + 1])[0]
            if score == "probability":
                z = torch.softmax(z, 0)
            vals.append((-float(z[int(y[i])]), i))
    return [i for _, i in sorted(vals)[:m]]


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_selection_matches_brute_force_sort_and_restores_mode(score):
    model = _mlp(5)
    x, y, data = _data()
    cls = (y == 2).nonzero().flatten().tolist()
    sub = data.subset(cls)
    model.train()
    strategy = SimpleNamespace(model=model, eval_mb_size=7, device="cpu")  # odd batch size: batching is exact
    order = PredictiveSortingSelection(score=score).make_sorted_indices(strategy, sub)
    assert model.training  # mode restored
    assert sorted(order) == list(range(len(cls)))
    want = _brute_top(copy.deepcopy(model), x[cls], y[cls], 10, score)
    assert order[:10] == want
    model.eval()
    with torch.no_grad():
        z = model(x[cls])
        s = (torch.softmax(z, 1) if score == "probability" else z)[:, 2]
    assert torch.all(s[order[:-1]] >= s[order[1:]])  # non-increasing along the list


def _store_all(buf, model, data, classes):
    strategy = SimpleNamespace(model=model, eval_mb_size=16, device="cpu")
    targets = torch.as_tensor(list(data.targets))
    kept = {}
    for c in classes:
        idx = (targets == c).nonzero().flatten().tolist()
        kept[c] = buf.store(strategy, data.subset(idx), c)
    return kept


def test_grow_mode_keeps_quota_per_class_and_memory_grows():
    model = _mlp(5)
    x, y, data = _data()
    buf = PSMRBuffer(mode="grow", quota=6)
    kept = _store_all(buf, model, data, [0, 1, 2])
    assert len(buf.buffer) == 18 and buf.max_size == 18
    for c in (0, 1, 2):
        idx = (y == c).nonzero().flatten()
        assert kept[c] == _brute_top(model, x[idx], y[idx], 6)
    first = list(buf.kept_indices(0))
    _store_all(buf, model, data, [3])
    assert len(buf.buffer) == 24 and buf.kept_indices(0) == first  # older classes keep their first m
    assert sorted(int(t) for t in buf.buffer.targets) == sorted([0, 1, 2, 3] * 6)


def test_buffer_holds_exactly_the_kept_images_and_is_rebuilt_only_when_they_change():
    """The memory is one subset of a pool the classes are appended to once (not one dataset per class
    concatenated at every step), and an unchanged memory is not rebuilt at all."""
    model = _mlp(5)
    _, _, data = _data()
    buf = PSMRBuffer(mode="limit", max_size=12)
    _store_all(buf, model, data, [0, 1, 2])
    want = [buf.class_data[c][i] for c in (0, 1, 2) for i in buf.kept_indices(c)]
    got = [buf.buffer[k] for k in range(len(buf.buffer))]
    assert len(got) == len(want) == 12
    for (xa, ya, *_), (xb, yb, *_) in zip(got, want):
        assert torch.equal(xa, xb) and int(ya) == int(yb)
    same = buf.buffer
    buf.set_num_classes(3)  # quota unchanged: the very same dataset object
    assert buf.buffer is same
    buf.set_num_classes(4)  # quota 12 // 4 = 3: rebuilt, the top 3 of each list
    assert buf.buffer is not same and len(buf.buffer) == 9
    assert sorted(int(t) for t in buf.buffer.targets) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_limit_mode_fixes_total_and_shrinks_lists_from_the_bottom():
    model = _mlp(5)
    x, y, data = _data()
    buf = PSMRBuffer(mode="limit", max_size=24)
    _store_all(buf, model, data, [0, 1])
    assert buf.per_class() == 12 and len(buf.buffer) == 24
    top12 = list(buf.kept_indices(0))
    _store_all(buf, model, data, [2, 3])
    assert buf.per_class() == 6 and len(buf.buffer) == 24
    assert buf.kept_indices(0) == top12[:6]  # keep the top of each list
    buf.set_num_classes(5)
    assert buf.per_class() == 4 and len(buf.buffer) == 16
    with pytest.raises(ConfigError):
        PSMRBuffer(mode="grow")
    with pytest.raises(ConfigError):
        PSMRBuffer(mode="limit")


def test_quota_formula():
    from compound_fer.memory import memory_budget

    assert memory_budget(memory_fraction=0.3, n_train_images=4600, n_classes_total=21) == (1380, 1380 // 21)
    assert memory_budget(memory_fraction=0.5, n_train_images=100, n_classes_total=10).quota == 5
    assert memory_budget(memory_fraction=0.0, n_train_images=100, n_classes_total=10) == (0, 1)
    assert PSMRPlugin(memory_fraction=0.0, total_train_images=100, num_classes_total=10).quota == 1
    assert PSMRPlugin(memory_fraction=0.5, total_train_images=100, num_classes_total=10).quota == 5


def test_plugin_reproduces_reference_schedule():
    from avalanche.benchmarks import nc_benchmark
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
    from torch.utils.data import TensorDataset

    x, y, _ = _data(n_per_class=40, n_classes=5, seed=2)
    bench = nc_benchmark(TensorDataset(x, y), TensorDataset(x, y), n_experiences=3, task_labels=False,
                         shuffle=False, fixed_class_order=list(range(5)), per_exp_classes={0: 3})

    class Spy(SupervisedPlugin):  # runs after PSMR in every callback
        def __init__(self):
            super().__init__()
            self.step_targets, self.models = [], []

        def after_train_dataset_adaptation(self, strategy, **kw):
            self.step_targets.append(sorted(int(t) for t in strategy.adapted_dataset.targets))

        def after_training_exp(self, strategy, **kw):
            self.models.append(copy.deepcopy(strategy.model))

    psmr = PSMRPlugin(memory_fraction=0.25, seed=0)  # m = round(0.25 * 40) = 10
    spy = Spy()
    model = _mlp(3, seed=1)
    strategy = Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2), train_mb_size=16,
                     train_epochs=2, eval_mb_size=32, plugins=[psmr, spy], evaluator=EvaluationPlugin(loggers=[]))
    exps = list(bench.train_stream)
    for exp in exps:
        strategy.train(exp)
    m = 10
    assert psmr.quota == m
    assert spy.step_targets[0] == sorted(y[y < 3].tolist())  # basic step: all its data
    assert spy.step_targets[1] == sorted([0, 1, 2, 3] * m)  # memory (m per old class) + m new
    assert spy.step_targets[2] == sorted([0, 1, 2, 3, 4] * m)
    buf = psmr.buffer

    def stored_rows(c):  # rows of x kept for class c
        sub = buf.class_data[c]
        return [sub[i][0] for i in buf.kept_indices(c)]

    for c, model_at in ((0, spy.models[0]), (2, spy.models[0]), (3, spy.models[1]), (4, spy.models[2])):
        idx = (y == c).nonzero().flatten()
        want = _brute_top(model_at, x[idx], y[idx], m)  # basic classes by the basic model, later by the step's model
        got = stored_rows(c)
        assert all(torch.equal(g, x[idx][w]) for g, w in zip(got, want)), f"class {c}"


@pytest.mark.parametrize("n", [1, 2, 3, 10, 37, 64])
def test_spread_order_is_a_permutation_whose_prefixes_span_the_ranking(n):
    order = spread_order(n)
    assert sorted(order) == list(range(n))
    for m in range(1, n + 1):  # any first m: one from each of m equal bands of the ranking, within one band
        prefix = sorted(order[:m])
        assert prefix[0] == 0
        assert max(b - a for a, b in zip([-1, *prefix], [*prefix, n])) <= 2 * n / m + 1


def test_selection_pick_top_spread_random():
    model = _mlp(5)
    x, y, data = _data()
    cls = (y == 1).nonzero().flatten().tolist()
    sub = data.subset(cls)
    strategy = SimpleNamespace(model=model, eval_mb_size=16, device="cpu")
    top = PredictiveSortingSelection(pick="top").make_sorted_indices(strategy, sub)
    spread = PredictiveSortingSelection(pick="spread").make_sorted_indices(strategy, sub)
    rand = PredictiveSortingSelection(pick="random", seed=3).make_sorted_indices(strategy, sub)
    assert spread == [top[r] for r in spread_order(len(top))]
    assert spread[:2] == [top[0], top[len(top) // 2]]  # the best face, then the median one
    assert sorted(rand) == sorted(top) and rand != top
    assert rand == PredictiveSortingSelection(pick="random", seed=3).make_sorted_indices(strategy, sub)  # seeded
    with pytest.raises(ConfigError, match="'top', 'spread' or 'random'"):
        PredictiveSortingSelection(pick="easiest")


def test_kdpsmr_selection_option_reaches_the_memory_and_is_checked():
    from compound_fer.training.registry import make_strategy

    strat = make_strategy("kdpsmr", model=_mlp(5), selection="spread")
    assert strat.psmr.selection.pick == "spread"
    with pytest.raises(ConfigError, match="selection"):
        make_strategy("kdpsmr", model=_mlp(5), selection="easiest")
