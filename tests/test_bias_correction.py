"""Bias correction: each plugin removes a lean toward one side that a step's data builds in.

Gaussian blobs stand in for a frozen embedding (the model is the identity + a GrowingHead, as a FERModel
with ``trainable: head``); the last tests run the corrections through the protocol on synthetic faces.
"""

from __future__ import annotations

import copy

import pytest
import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_tensor_classification_dataset as tensor_dataset,
)
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from compound_fer.config import parse_config
from compound_fer.errors import ConfigError
from compound_fer.training.bias_correction import (
    BalancedFinetunePlugin,
    BiCPlugin,
    LogitAdjustmentPlugin,
    WeightAligningPlugin,
    bias_plugins,
    fit_bias_layer,
    fold_affine,
)

DIM, OLD = 8, 4
NEW = OLD  # the new class's label


class Toy(nn.Module):
    """A frozen identity embedding and a trainable head (every class's unit from the start): what a
    head-only step trains."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.head = nn.Module()
        self.head.classifier = nn.Linear(DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.classifier(x)


def _blobs(per_class: dict[int, int], seed: int, spread: float = 2.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(OLD + 1, DIM, generator=torch.Generator().manual_seed(123)) * 2.0
    xs, ys = [], []
    for c, n in per_class.items():
        xs.append(centres[c] + spread * torch.randn(n, DIM, generator=g))
        ys.append(torch.full((n,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def _stream(step1: dict[int, int], seed: int = 0):
    """Step 0: the old classes (60 faces each); step 1: ``step1`` faces per class (old ones = a memory)."""
    x0, y0 = _blobs({c: 60 for c in range(OLD)}, seed)
    x1, y1 = _blobs(step1, seed + 1)
    return benchmark_from_datasets(train=[tensor_dataset(x0, y0), tensor_dataset(x1, y1)], test=[])


def _test_set(seed: int = 99):
    return _blobs({c: 200 for c in range(OLD + 1)}, seed)


def _train(step1: dict[int, int], plugins=(), *, epochs: int = 10, seed: int = 0, first: int = 0) -> Toy:
    torch.manual_seed(seed)
    model = Toy(OLD + 1)
    bench = _stream(step1, seed)
    strategy = Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
                     train_mb_size=64, train_epochs=epochs, eval_mb_size=256, plugins=list(plugins),
                     evaluator=EvaluationPlugin(loggers=[]))
    for exp in bench.train_stream[first:]:
        strategy.train(exp)
    return model


@torch.no_grad()
def _recalls(model: nn.Module) -> tuple[float, float]:
    """(new-class recall, old-class accuracy) on a balanced test set."""
    x, y = _test_set()
    pred = model(x).argmax(1)
    new = y == NEW
    return float((pred[new] == NEW).float().mean()), float((pred[~new] == y[~new]).float().mean())


def test_logit_adjustment_lets_a_one_shot_class_be_predicted():
    """A few-shot step: 30 stored faces per old class and 2 of the new one. Plain CE almost never answers
    the new class; the logit-adjusted loss does, and keeps most of the old accuracy."""
    step1 = {**{c: 30 for c in range(OLD)}, NEW: 1}
    plain_new, plain_old = _recalls(_train(step1))
    la_new, la_old = _recalls(_train(step1, [LogitAdjustmentPlugin(tau=1.0)]))
    assert la_new > plain_new + 0.2, (plain_new, la_new)
    assert la_old > plain_old - 0.1


def test_logit_adjustment_is_a_no_op_on_balanced_steps_and_restores_the_criterion():
    step1 = {c: 20 for c in range(OLD + 1)}
    plugin = LogitAdjustmentPlugin(tau=1.0)
    a = _train(step1, first=1)  # one step, every class in it: uniform priors shift every logit alike
    b = _train(step1, [plugin], first=1)
    assert torch.allclose(a.head.classifier.weight, b.head.classifier.weight, atol=1e-5)
    assert plugin._plain is None and float(plugin.log_prior.std()) < 1e-6


def test_logit_adjustment_margin_shifts_the_new_class_by_the_same_nats_at_any_shot_count():
    """``margin``: the new class sits ``margin`` nats below the old ones, whatever its count; the count prior's
    gap (LA's default) shrinks as the shots grow, and its step record says which rule ran."""
    gaps = {}
    for k in (1, 5):
        step1 = {**{c: 30 for c in range(OLD)}, NEW: k}
        counts, fixed = LogitAdjustmentPlugin(tau=1.0), LogitAdjustmentPlugin(tau=1.0, margin=2.0)
        shifts = []
        for plugin in (counts, fixed):
            seen = []
            plugin.before_training_exp = _spy(plugin.before_training_exp, seen)
            _train(step1, [plugin], epochs=1)
            shifts.append(seen[1])  # step 1: the old classes' memory and the new class
        gaps[k] = [float(sh[:OLD].mean() - sh[NEW]) for sh in shifts]
        assert fixed.history[0]["margin"] == 2.0 and "margin" not in counts.history[0]
    assert gaps[1][0] == pytest.approx(torch.log(torch.tensor(30.0)).item(), rel=1e-4)
    assert gaps[5][0] == pytest.approx(torch.log(torch.tensor(6.0)).item(), rel=1e-4)
    assert gaps[1][1] == pytest.approx(2.0) and gaps[5][1] == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="margin"):
        LogitAdjustmentPlugin(margin=-1.0)
    assert parse_config({"fewshot": {"bias_correction": {"methods": ["logit_adjustment"], "margin": 2.0}}}
                        ).fewshot.bias_correction.label == "logit_adjustment margin 2.0"


def _spy(method, seen: list):
    """Wrap a plugin's before_training_exp: record the loss's shift of each step."""
    def wrapped(strategy, **kwargs):
        method(strategy, **kwargs)
        seen.append(strategy._criterion.shift.detach().cpu().clone())
    return wrapped


def _lean_to_new(model: Toy, factor: float = 4.0, shift: float = 2.0) -> Toy:
    """A head that leans toward the new class, as a step that trained it last leaves it."""
    biased = copy.deepcopy(model)
    fold_affine(biased.head.classifier, [NEW], alpha=factor, beta=shift)
    return biased


class _Step:
    """The strategy attributes a correction reads after a step."""

    def __init__(self, model, dataset, experience) -> None:
        self.model, self.adapted_dataset, self.experience, self.device = model, dataset, experience, "cpu"


def test_weight_aligning_equalises_norms_and_gives_the_old_classes_back():
    step1 = {c: 20 for c in range(OLD + 1)}
    balanced = _train(step1)
    biased = _lean_to_new(balanced, factor=4.0, shift=0.0)
    new_b, old_b = _recalls(biased)
    plugin = WeightAligningPlugin()
    plugin.seen = list(range(OLD))
    exp = _stream(step1).train_stream[1]
    plugin.after_training_exp(_Step(biased, exp.dataset, exp))
    norms = biased.head.classifier.weight.detach().norm(dim=1)
    assert norms[NEW] == pytest.approx(float(norms[:OLD].mean()), rel=1e-5)
    new_a, old_a = _recalls(biased)
    assert old_a > old_b + 0.1 and plugin.history[0]["gamma"] < 1


def test_bic_learns_the_shift_back_from_a_balanced_held_out_set():
    step1 = {c: 30 for c in range(OLD + 1)}
    balanced = _train(step1)
    biased = _lean_to_new(balanced, factor=1.0, shift=3.0)
    x, y = _blobs({c: 10 for c in range(OLD + 1)}, seed=7)
    z = biased(x).detach()
    alpha, beta = fit_bias_layer(z, y, new=[NEW])
    assert alpha > 0 and float((alpha * z[:, NEW] + beta).mean()) < float(z[:, NEW].mean()) - 1.0
    fold_affine(biased.head.classifier, [NEW], alpha=alpha, beta=beta)
    assert _recalls(biased)[1] > _recalls(_lean_to_new(balanced, factor=1.0, shift=3.0))[1] + 0.1


def test_bic_holds_out_the_same_count_of_every_class_and_trains_on_the_rest():
    plugin = BiCPlugin(holdout=0.2)
    model = _train({c: 30 for c in range(OLD)} | {NEW: 30}, [plugin], epochs=2)
    step = plugin.history[0]
    assert step["held_out"] == 6 * (OLD + 1) and step["new"] == [NEW] and step["alpha"] > 0
    assert isinstance(model.head.classifier, nn.Linear)


def test_bic_leaves_a_one_shot_step_uncorrected():
    plugin = BiCPlugin(holdout=0.2)
    _train({**{c: 30 for c in range(OLD)}, NEW: 1}, [plugin], epochs=1)
    assert "skipped" in plugin.history[0]


def test_balanced_finetune_trains_on_equal_counts_and_recovers_the_old_classes():
    step1 = {**{c: 30 for c in range(OLD)}, NEW: 30}
    balanced = _train(step1)
    biased = _lean_to_new(balanced, factor=3.0, shift=2.0)
    old_b = _recalls(biased)[1]
    plugin = BalancedFinetunePlugin(epochs=100, lr=0.05)
    plugin.seen = list(range(OLD))
    exp = _stream(step1).train_stream[1]
    plugin.after_training_exp(_Step(biased, exp.dataset, exp))
    assert plugin.history[0]["per_class"] == 30 and _recalls(biased)[1] > old_b + 0.1


def test_unknown_corrections_and_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="valid"):
        bias_plugins(["cosine"])
    with pytest.raises(ConfigError, match="holdout"):
        BiCPlugin(holdout=1.5)
    with pytest.raises(ConfigError, match="bias_correction"):
        parse_config({"continual": {"bias_correction": "cosine"}})
    cfg = parse_config({"continual": {"bias_correction": ["logit_adjustment", "weight_aligning"]},
                        "fewshot": {"bias_correction": {"methods": ["bic"], "holdout": 0.3}}})
    assert cfg.continual.bias_correction.label == "logit_adjustment+weight_aligning"
    assert cfg.fewshot.bias_correction.holdout == 0.3
    assert parse_config({"continual": {"bias_correction": "none"}}).continual.bias_correction.label == "none"
    scoped = parse_config({"continual": {"bias_correction": {"methods": ["bic"], "applies_to": ["kdpsmr"]}}})
    assert scoped.continual.bias_correction.for_method("kdpsmr").label == "bic"
    assert scoped.continual.bias_correction.for_method("gdumb").label == "none"


def _protocol(tmp_path, bias):
    from compound_fer.runner import run_protocol

    cfg = parse_config({
        "name": "tiny-bias",
        "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 10, "per_subject": 1}},
        "model": {"backbone": "small_cnn", "pretrained": False},
        "basic": {"epochs": 2, "batch_size": 32},
        "continual": {"methods": ["kdpsmr"], "orders": 1, "epochs": 1, "trainable": "head", "augment_views": 1,
                      "bias_correction": bias},
        "fewshot": {"enabled": True, "shots": [1], "compounds": ["Awed"], "mode": "kept", "epochs": 5,
                    "bias_correction": bias},
        "threads": 1, "loggers": [],
    })
    return run_protocol(cfg, out_dir=tmp_path, progress=False)


def test_the_protocol_rows_say_which_correction_ran_on_synthetic_faces(tmp_path):
    rows = _protocol(tmp_path, ["logit_adjustment", "weight_aligning"])
    cont = next(r for r in rows if r["kind"] == "continual")
    assert cont["bias_correction"] == "logit_adjustment+weight_aligning"
    assert {s["correction"] for s in cont["bias_steps"]} == {"logit_adjustment", "weight_aligning"}
    assert len([s for s in cont["bias_steps"] if s["correction"] == "weight_aligning"]) == 15
    fs = next(r for r in rows if r["kind"] == "fewshot")
    assert fs["settings"]["bias_correction"] == "logit_adjustment+weight_aligning"
    assert 0 <= fs["harmonic_mean"] <= 1 and 0 <= fs["balanced_accuracy"] <= 1
    assert (tmp_path / "models" / "kdpsmr_seed0.pt").is_file()
