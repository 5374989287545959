"""PathNet: frozen modules never change after their task; later tasks still learn, reusing the grid."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("avalanche")

from avalanche.benchmarks import nc_benchmark  # noqa: E402
from avalanche.benchmarks.utils.classification_dataset import (  # noqa: E402
    _make_taskaware_tensor_classification_dataset as tensor_dataset,
)
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402

from compound_fer.errors import ConfigError  # noqa: E402
from compound_fer.training.pathnet import PathNet, build_pathnet  # noqa: E402
from compound_fer.training.registry import StrategyArgs  # noqa: E402

DIM, CLASSES = 16, 5


class Backbone(nn.Module):
    feature_dim = 32

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU())

    def features(self, x):
        return self.net(x)


def blobs(per: int, seed: int):
    g = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(CLASSES, DIM, generator=g)
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([centres[c] + torch.randn(per, DIM, generator=g) for c in range(CLASSES)])
    return x, torch.arange(CLASSES).repeat_interleave(per)


def run():
    torch.manual_seed(0)
    x, y = blobs(40, 1)
    xt, yt = blobs(20, 2)
    bench = nc_benchmark(tensor_dataset(x, y), tensor_dataset(xt, yt), n_experiences=3, task_labels=False,
                         fixed_class_order=list(range(CLASSES)), per_exp_classes={0: 3})
    args = StrategyArgs(lr=5e-3, train_epochs=4, train_mb_size=16, mem_size=30, num_classes_total=CLASSES,
                        options={"pathnet_layers": 2, "pathnet_modules": 6, "pathnet_active": 2, "pathnet_hidden": 16,
                               "population": 4, "tournament_steps": 3})
    strategy = build_pathnet(model=Backbone(), args=args, evaluator=EvaluationPlugin(loggers=[]))
    return strategy, bench, (xt, yt)


def frozen_state(model: PathNet) -> dict[str, torch.Tensor]:
    keep = {f"grid.{l}.{m}." for l, m in model.frozen} | {f"heads.{t}." for t in range(len(model.task_paths))}
    keep |= {"backbone."}
    return {k: v.clone() for k, v in model.state_dict().items() if any(k.startswith(p) for p in keep)}


def test_frozen_modules_never_change_and_new_tasks_learn():
    strategy, bench, (xt, yt) = run()
    model: PathNet = strategy.model
    strategy.train(bench.train_stream[0])
    assert len(model.task_paths) == 1 and len(model.frozen) == 2 * 2
    snap = frozen_state(model)
    free_before = {k: v.clone() for k, v in model.state_dict().items() if k not in snap and k.startswith("grid.")}
    old = xt[yt < 3]
    with torch.no_grad():
        old_logits = model.eval()(old)[:, :3].clone()
    basic_acc = float((old_logits.argmax(1) == yt[yt < 3]).float().mean())
    for exp in bench.train_stream[1:]:
        strategy.train(exp)
        now = model.state_dict()
        for k, v in snap.items():
            assert torch.equal(now[k], v), f"frozen parameter {k} changed"
    with torch.no_grad():
        out = model.eval()(xt)
    assert torch.equal(out[yt < 3][:, :3], old_logits), "old tasks' logits must be bit-identical"
    changed = [k for k, v in free_before.items() if not torch.equal(model.state_dict()[k], v)]
    assert changed, "the unfrozen modules must have been re-initialised/trained"
    assert len(model.task_paths) == 3 and model.head_classes == [[0, 1, 2], [3], [4]]
    acc = float((out.argmax(1) == yt).float().mean())
    print(f"basic accuracy {basic_acc:.3f}; all 5 classes after 3 tasks {acc:.3f}")
    assert basic_acc > 0.9 and acc > 0.6


def test_tournament_mutates_and_paths_stay_valid():
    net = PathNet(backbone=Backbone(), layers=3, modules=5, active=3, hidden=8)
    g = torch.Generator().manual_seed(0)
    p = net.random_path(g)
    mutated = [net.mutate(p, g) for _ in range(50)]
    assert any(not torch.equal(m, p) for m in mutated)
    for m in mutated:
        assert all(len(set(row.tolist())) == 3 and 0 <= int(row.min()) and int(row.max()) < 5 for row in m)
    with pytest.raises(ConfigError):
        PathNet(backbone=Backbone(), modules=2, active=3)


def test_first_experience_is_trained_even_when_asked_for_zero_epochs():
    strategy, bench, (xt, yt) = run()
    strategy.train_epochs = 0  # what the runner does on the shared basic experience
    strategy.train(bench.train_stream[0])
    basic = yt < 3
    with torch.no_grad():
        acc = float((strategy.model.eval()(xt[basic]).argmax(1) == yt[basic]).float().mean())
    assert acc > 0.9
