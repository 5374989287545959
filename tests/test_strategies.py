"""KD + PSMR really keeps the basic classes (against Naive), the registry builds it, the docs snippet runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from compound_fer.models import FERModel, GrowingHead
from compound_fer.training.strategies import KDPSMR, KDOnly, PSMROnly

REPO = Path(__file__).resolve().parents[1]


def _blobs(seed, n_classes=9, dim=16, n_train=60, n_test=40):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, dim, generator=g) * 1.5

    def draw(n):
        y = torch.arange(n_classes).repeat_interleave(n)
        return centers[y] + torch.randn(len(y), dim, generator=g), y

    return draw(n_train), draw(n_test)


def _mlp(seed, n0):
    torch.manual_seed(seed)
    tail = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
    return FERModel(trunk=nn.Identity(), tail=tail, head=GrowingHead(in_features=32, num_classes=n0, dropout=0.0),
                    feature_dim=32, target_layer=tail[0], freeze_bn=False)


def _acc(model, x, y, classes):
    keep = torch.isin(y, torch.tensor(classes))
    model.eval()
    with torch.no_grad():
        return (model(x[keep]).argmax(1) == y[keep]).float().mean().item()


def _basic_forgetting(kind, seed):
    """Accuracy on the 5 basic classes after the basic step minus after 4 one-class steps."""
    from avalanche.benchmarks import nc_benchmark
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin
    from torch.utils.data import TensorDataset

    (xtr, ytr), (xte, yte) = _blobs(seed)
    bench = nc_benchmark(TensorDataset(xtr, ytr), TensorDataset(xte, yte), n_experiences=5, task_labels=False,
                         shuffle=False, seed=seed, fixed_class_order=list(range(9)), per_exp_classes={0: 5})
    model = _mlp(seed, 5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    common = dict(model=model, optimizer=opt, train_mb_size=16, train_epochs=5, eval_mb_size=256,
                  evaluator=EvaluationPlugin(loggers=[]))
    strategy = Naive(**common) if kind == "naive" else KDPSMR(**common, lr=1e-2, seed=seed)
    accs = []
    for exp in bench.train_stream:
        strategy.train(exp)
        accs.append(_acc(model, xte, yte, list(range(5))))
    return accs[0] - accs[-1], accs[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kdpsmr_forgets_clearly_less_than_naive(seed):
    naive, naive_basic = _basic_forgetting("naive", seed)
    ours, ours_basic = _basic_forgetting("kdpsmr", seed)
    assert naive_basic > 0.8 and ours_basic > 0.8  # both learned the basic classes first
    assert naive > 0.6  # Naive forgets the basic classes on this stream
    assert ours < naive - 0.4, (ours, naive)


def test_registry_builds_the_method_and_ablations_with_options():
    from compound_fer.training.registry import available, make_strategy

    entries = available()
    assert {"kdpsmr", "kd", "psmr"} <= set(entries)
    assert entries["kdpsmr"].uses_memory and not entries["kd"].uses_memory
    s = make_strategy("kdpsmr", model=_mlp(0, 3), lr=1e-5, mem_size=210, num_classes_total=21, eval_mb_size=32,
                      options={"temperature": 2.0, "teacher_padding": "mask", "memory_mode": "grow"})
    assert isinstance(s, KDPSMR) and s.eval_mb_size == 32 and s.train_mb_size == 16
    assert s.kd.temperature == 2.0 and s.kd.teacher_padding == "mask" and s.kd.gamma0 == 0.1
    assert s.psmr.quota == 10  # mem_size // num_classes_total
    assert s.optimizer.param_groups[0]["lr"] == 1e-5
    k = make_strategy("kd", model=_mlp(0, 3), gamma0=0.2)
    assert isinstance(k, KDOnly) and k.psmr is None and k.kd is not None
    p = make_strategy("psmr", model=_mlp(0, 3), mem_size=100, options={"quota": 7, "memory_mode": "limit"})
    assert isinstance(p, PSMROnly) and p.kd is None and p.psmr.quota == 7 and p.psmr.max_size == 100


def test_docs_snippet_runs():
    text = (REPO / "docs" / "method.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/method.md has no python snippet"
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(blocks[0], "docs/method.md", "exec"), scope)
    model, strategy = scope["model"], scope["strategy"]
    assert model.num_classes == 8
    assert isinstance(strategy, KDPSMR) and strategy.kd.step == 2
    assert sorted(strategy.psmr.buffer.classes) == list(range(8))


@pytest.mark.parametrize("kwargs, key", [({"train_epoch": 3}, "train_epoch"), ({"quota": 5}, "quota"),
                                         ({"options": {"alpah": 1.0}}, "alpah")])
def test_make_strategy_refuses_an_unknown_option_naming_method_and_key(kwargs, key):
    from compound_fer.errors import ConfigError
    from compound_fer.training.registry import make_strategy

    method = "kd" if key == "quota" else "lwf"
    with pytest.raises(ConfigError, match=rf"method '{method}': unknown option\(s\) {key}; valid keys: "):
        make_strategy(method, model=_mlp(0, 3), **kwargs)


def test_make_strategy_refuses_a_mistyped_option_naming_method_and_key():
    from compound_fer.errors import ConfigError
    from compound_fer.training.registry import make_strategy

    with pytest.raises(ConfigError, match=r"method 'lwf'\.alpha: .*number.*'strong'"):
        make_strategy("lwf", model=_mlp(0, 3), alpha="strong")
    with pytest.raises(ConfigError, match=r"method 'kdpsmr'\.memory_mode: .*'grow' or 'limit'"):
        make_strategy("kdpsmr", model=_mlp(0, 3), memory_mode="forever")
