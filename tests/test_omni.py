"""Omni-supervised distilled data: mining is precise, distilled images beat as many real ones, replay works."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compound_fer import taxonomy
from compound_fer.training.distill_data import distribution_matching, random_real, train_on
from compound_fer.training.omni import fer_pool_truth, mine_by_similarity, read_fer_pool

C = 4


def faces(subjects: range, per: int, seed: int, noise: float = 3.0):
    """16x16 stand-in 'faces': a smooth class pattern + a smooth subject pattern + heavy pixel noise."""
    g = torch.Generator().manual_seed(0)
    cls = F.interpolate(torch.randn(C, 3, 4, 4, generator=g), size=16, mode="bilinear")
    subj = F.interpolate(torch.randn(64, 3, 4, 4, generator=g), size=16, mode="bilinear")
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for s in subjects:
        for c in range(C):
            xs.append(cls[c] + subj[s] + noise * torch.randn(per, 3, 16, 16, generator=g))
            ys += [c] * per
    return torch.cat(xs), torch.tensor(ys)


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                                   nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(64, C)

    def features(self, x):
        return self.trunk(x)

    def forward(self, x):
        return self.head(self.features(x))


def fit(x, y, seed: int) -> SmallNet:
    torch.manual_seed(seed)  # the initialisation too, so the comparison is paired and reproducible
    return train_on(x, y, SmallNet(), epochs=100, lr=1e-2, seed=seed)


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_mining_precision_beats_chance_widely():
    x, y = faces(range(4), 2, seed=1)  # few labels: 8 per class
    pool, truth = faces(range(10, 40), 2, seed=3)  # unlabelled pool of unseen subjects
    primitive = fit(x, y, 0)
    mined = mine_by_similarity(primitive.features, x, y, pool, per_class=15, classify=primitive)
    precision, chance = mined.precision(truth), mined.chance(truth)
    print(f"mined {len(mined.index)} faces, precision {precision:.3f}, chance {chance:.3f}")
    assert len(mined.index) > 0 and set(mined.labels.tolist()) <= set(range(C))
    assert precision > 2 * chance and precision > 0.6


def test_distilled_images_beat_as_many_random_real_images():
    x, y = faces(range(12), 5, seed=1)
    xt, yt = faces(range(20, 28), 5, seed=2)
    sx, sy = distribution_matching(x, y, ipc=2, iterations=200, seed=0)
    assert len(sx) == 2 * C and torch.bincount(sy).tolist() == [2] * C
    dm = [accuracy(fit(sx, sy, s), xt, yt) for s in range(3)]
    rnd = [accuracy(fit(*random_real(x, y, ipc=2, seed=s), s), xt, yt) for s in range(3)]
    print(f"distilled {dm} random real {rnd}")
    assert sum(dm) / 3 > sum(rnd) / 3 + 0.04


def test_fer_pool_reads_unlabelled_and_maps_truth(fer_pool_root):
    pool = read_fer_pool(fer_pool_root, limit=64, image_size=32)
    assert pool.images.shape == (64, 3, 32, 32) and (pool.labels == -1).all()
    assert torch.equal(pool.images[:, 0], pool.images[:, 1])  # grey copied to 3 channels
    truth = fer_pool_truth(fer_pool_root, pool.sources)
    allowed = {taxonomy.label_of(n) for n in taxonomy.basic_names(include_neutral=True)}
    assert set(truth.tolist()) <= allowed


def test_distilled_replay_keeps_old_classes_in_a_continual_stream():
    pytest.importorskip("avalanche")
    from avalanche.benchmarks import nc_benchmark
    from avalanche.benchmarks.utils.classification_dataset import (
        _make_taskaware_tensor_classification_dataset as tensor_dataset,
    )
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates import SupervisedTemplate

    from compound_fer.training.omni import DistilledReplayPlugin, build_omni
    from compound_fer.training.registry import StrategyArgs
    from compound_fer.training.template import template_kwargs

    x, y = faces(range(8), 4, seed=1, noise=1.0)
    xt, yt = faces(range(20, 24), 4, seed=2, noise=1.0)
    pool, truth = faces(range(30, 40), 2, seed=3, noise=1.0)
    bench = nc_benchmark(tensor_dataset(x, y), tensor_dataset(xt, yt), n_experiences=2, task_labels=False,
                         fixed_class_order=list(range(C)), per_exp_classes={0: 2})
    args = StrategyArgs(lr=3e-3, train_epochs=6, train_mb_size=16, mem_size=8, num_classes_total=C,
                        options={"dm_iterations": 60, "pool": pool, "mine_per_class": 5})
    old_acc = {}
    for name in ("naive", "omni"):
        torch.manual_seed(0)
        model = SmallNet()
        if name == "omni":
            strategy = build_omni(model=model, args=args, evaluator=EvaluationPlugin(loggers=[]))
        else:
            strategy = SupervisedTemplate(model=model, **template_kwargs(model=model, args=args, plugins=[],
                                                                         evaluator=EvaluationPlugin(loggers=[])))
        for exp in bench.train_stream:
            strategy.train(exp)
        old_acc[name] = accuracy(model.eval(), xt[yt < 2], yt[yt < 2])
    plugin = next(p for p in strategy.plugins if isinstance(p, DistilledReplayPlugin))
    assert torch.bincount(plugin.labels).tolist() == [2] * C  # ipc = mem_size // classes = 2 per class
    assert plugin.mined and plugin.mined[0].precision(truth) > 0.5
    print(f"old-class accuracy naive {old_acc['naive']:.3f}, distilled replay {old_acc['omni']:.3f}")
    assert old_acc["omni"] > old_acc["naive"] + 0.2
