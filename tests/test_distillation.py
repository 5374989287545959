"""The reference's KD loss, its schedule, the padding variants, and a teacher that never changes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from compound_fer.models import FERModel, GrowingHead
from compound_fer.training.distillation import (
    DistillationPlugin,
    distillation_loss,
    kd_gamma,
    soft_targets,
)


def test_gamma_matches_formula():
    for i in range(16):
        assert kd_gamma(i) == pytest.approx(0.1 * math.exp(-i / (1 + math.e)), rel=1e-12)
    assert kd_gamma(0) == pytest.approx(0.1)
    assert kd_gamma(3, gamma0=0.5) == pytest.approx(0.5 * math.exp(-3 / (1 + math.e)))
    assert all(kd_gamma(i + 1) < kd_gamma(i) for i in range(10))


def _reference_loss(zs, zt, y, gamma, T):
    """The formula written out with numpy loops: (1-g) CE(y, z_s) + g * -sum p log q, zero-padded teacher."""
    zs, zt = zs.astype(np.float64), zt.astype(np.float64)
    n, c = zs.shape
    total = 0.0
    for k in range(n):
        ls = zs[k] - zs[k].max()
        logq = ls - np.log(np.exp(ls).sum())
        ce = -logq[y[k]]
        pad = np.zeros(c)
        pad[: zt.shape[1]] = zt[k]
        e = np.exp(pad / T - (pad / T).max())
        p = e / e.sum()
        lt = zs[k] / T - (zs[k] / T).max()
        logqt = lt - np.log(np.exp(lt).sum())
        total += (1 - gamma) * ce + gamma * -(p * logqt).sum()
    return total / n


def test_loss_matches_hand_written_formula():
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(5, 8, generator=g) * 3, torch.randn(5, 6, generator=g) * 3
    y = torch.tensor([0, 7, 3, 6, 1])
    for i in (0, 4):
        got = distillation_loss(zs, zt, y, gamma=kd_gamma(i), temperature=3.0, padding="zeros")
        want = _reference_loss(zs.numpy(), zt.numpy(), y.numpy(), kd_gamma(i), 3.0)
        assert float(got) == pytest.approx(want, rel=1e-5)
    ce = nn.functional.cross_entropy(zs, y)
    assert float(distillation_loss(zs, zt, y, gamma=0.0)) == pytest.approx(float(ce), rel=1e-6)


def test_zero_padding_gives_new_classes_mass_and_mask_gives_exactly_zero():
    # typical basic-model logits: a confident true class, the others spread around 0
    zt = torch.tensor([[6.0, 0.5, -0.5, -1.0, 0.0, -2.0], [4.0, 1.0, 0.0, -1.5, 0.5, -1.0]])
    p_zero = soft_targets(zt, 7, temperature=3.0, padding="zeros")
    p_mask = soft_targets(zt, 7, temperature=3.0, padding="mask")
    assert torch.allclose(p_zero.sum(1), torch.ones(2)) and torch.allclose(p_mask.sum(1), torch.ones(2))
    assert torch.all(p_zero[:, 6] > 0.05) and torch.all(p_zero[:, 6] < 0.2)  # the reference quirk, ~10-12%
    assert torch.all(p_mask[:, 6] == 0)
    # mask = the teacher's own softmax over its classes
    assert torch.allclose(p_mask[:, :6], torch.softmax(zt / 3.0, 1))
    # with mask the KD term only ever pushes a new class's logit down (its soft target is 0)
    zs = torch.zeros(2, 7, requires_grad=True)
    distillation_loss(zs, zt, torch.tensor([0, 0]), gamma=1.0, padding="mask").backward()
    assert torch.all(zs.grad[:, 6] > 0)  # gradient descent lowers the new logit towards 0 mass


def _mlp(n_classes: int, seed: int = 0) -> FERModel:
    torch.manual_seed(seed)
    tail = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    return FERModel(
        trunk=nn.Identity(),
        tail=tail,
        head=GrowingHead(in_features=16, num_classes=n_classes, dropout=0.0),
        feature_dim=16,
        target_layer=tail[0],
        freeze_bn=False,
    )


def _stream(seed: int = 0):
    from avalanche.benchmarks import nc_benchmark
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(5).repeat(16)
    x = torch.randn(5, 8, generator=g)[y] * 2 + torch.randn(len(y), 8, generator=g)
    return nc_benchmark(TensorDataset(x, y), TensorDataset(x, y), n_experiences=3, task_labels=False,
                        shuffle=False, fixed_class_order=list(range(5)), per_exp_classes={0: 3})


class _Recorder:
    """A plugin after the KD plugin: records every training loss with the batch it came from."""

    def __init__(self):
        from avalanche.training.plugins import SupervisedPlugin

        rec = self

        class P(SupervisedPlugin):
            def before_backward(self, strategy, **kw):
                rec.rows.append(
                    (
                        strategy.clock.train_exp_counter,
                        strategy.mb_x.detach().clone(),
                        strategy.mb_y.clone(),
                        strategy.mb_output.detach().clone(),
                        float(strategy.loss.detach()),
                    )
                )

        self.rows = []
        self.plugin = P()


def _naive(model, plugins):
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    return Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2), train_mb_size=16,
                 train_epochs=2, eval_mb_size=64, plugins=plugins, evaluator=EvaluationPlugin(loggers=[]))


def test_plugin_applies_reference_loss_from_step_one_and_teacher_never_changes():
    bench = _stream()
    model = _mlp(3)
    kd = DistillationPlugin(temperature=3.0, gamma0=0.1)
    rec = _Recorder()
    strategy = _naive(model, [kd, rec.plugin])
    exps = list(bench.train_stream)
    strategy.train(exps[0])
    assert kd.last_kd_loss is None  # no KD while learning the basic classes
    teacher = kd.teacher
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student0 = model.tail[0].weight.detach().clone()
    for exp in exps[1:]:
        strategy.train(exp)
    assert kd.teacher is teacher and kd.step == 2
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in frozen.items())
    assert teacher.num_classes == 3
    assert not torch.equal(model.tail[0].weight, student0)  # the student did learn
    # every recorded loss is exactly the formula with g_i, i = 0-based continual step
    for exp_idx, x, y, z_s, loss in rec.rows:
        if exp_idx == 0:
            assert loss == pytest.approx(float(nn.functional.cross_entropy(z_s, y)), rel=1e-5)
            continue
        with torch.no_grad():
            want = distillation_loss(z_s, teacher(x), y, gamma=kd_gamma(exp_idx - 1), temperature=3.0)
        assert loss == pytest.approx(float(want), rel=1e-5)
    # evaluation is CE only: the teacher is not even called
    calls = []
    h = teacher.register_forward_hook(lambda *a: calls.append(1))
    strategy.eval(bench.test_stream)
    h.remove()
    assert not calls


def test_given_teacher_distils_from_first_experience_and_previous_mode_follows_the_model():
    bench = _stream(1)
    exps = list(bench.train_stream)
    basic = _mlp(3, seed=3)
    model = _mlp(3, seed=3)
    kd = DistillationPlugin(teacher=basic, teacher_padding="mask")
    strategy = _naive(model, [kd])
    strategy.train(exps[1])
    assert kd.last_kd_loss is not None and kd.step == 1
    assert all(not p.requires_grad for p in kd.teacher.parameters())
    assert any(p.requires_grad for p in basic.parameters())  # the caller's module is not touched

    model2 = _mlp(3, seed=4)
    prev = DistillationPlugin(teacher_mode="previous")
    s2 = _naive(model2, [prev])
    s2.train(exps[0])
    s2.train(exps[1])
    assert prev.teacher.num_classes == 4  # the snapshot taken after step 1, not the basic model
    x = torch.randn(3, 8)
    model2.eval()
    assert torch.allclose(prev.teacher(x), model2(x))


def test_feature_distillation_is_zero_for_the_teacher_itself_and_grows_as_the_student_drifts():
    import copy

    from compound_fer.models import build_model
    from compound_fer.training.distillation import feature_distillation, freeze

    torch.manual_seed(0)
    student = build_model("small_cnn", num_classes=6, image_size=32).eval()
    teacher = freeze(copy.deepcopy(student))
    x = torch.rand(4, 3, 32, 32)
    assert float(feature_distillation(student, teacher, x).detach()) == 0.0
    with torch.no_grad():
        for p in student.tail.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss = feature_distillation(student, teacher, x)
    assert float(loss.detach()) > 0 and loss.requires_grad
