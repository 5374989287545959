"""The new-class learner that weighs shots against the component prior: its math, its option, its learners."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compound_fer.config import EpisodesConfig, FewShotPhase, ImprintConfig, parse_config
from compound_fer.errors import ConfigError
from compound_fer.training.episode_learners import BasicHead, learner
from compound_fer.training.imprinting import (
    blended_unit,
    data_weight,
    imprinted_unit,
    support_prototype,
    teen_calibrate,
)

D = 6


def test_imprinted_unit_has_the_basic_rows_norm_and_reads_the_centred_embedding():
    p, centre = torch.tensor([3.0, 4.0, 0, 0, 0, 0]), torch.ones(D)
    w, b = imprinted_unit(p, centre, 2.5)
    assert w.norm() == pytest.approx(2.5) and torch.allclose(w, 2.5 * p / 5)
    z = torch.randn(D)
    assert float(z @ w + b) == pytest.approx(float(w @ (z - centre)), abs=1e-5)


def test_support_prototype_is_the_unit_mean_of_centred_normalised_faces():
    z, centre = torch.tensor([[2.0, 0, 0, 0, 0, 0], [0, 10.0, 0, 0, 0, 0]]), torch.zeros(D)
    assert torch.allclose(support_prototype(z, centre), F.normalize(torch.tensor([1.0, 1, 0, 0, 0, 0]), dim=0))


def test_teen_alpha_zero_gives_the_plain_prototype_and_alpha_one_the_base_mean():
    p, base = F.normalize(torch.randn(D), dim=0), torch.eye(D)[:2]
    assert torch.equal(teen_calibrate(p, base, alpha=0.0, tau=16.0), p)
    assert torch.equal(teen_calibrate(p, base[:0], alpha=0.5, tau=16.0), p)  # no base: nothing to move toward
    one = teen_calibrate(p, base[:1], alpha=1.0, tau=16.0)
    assert torch.allclose(one, base[0])  # one component: softmax weight 1
    near = teen_calibrate(torch.tensor([1.0, 0.1, 0, 0, 0, 0]), base, alpha=0.5, tau=16.0)
    assert near[0] > near[1] > 0  # the nearer base prototype weighs more
    with pytest.raises(ConfigError, match="alpha"):
        teen_calibrate(p, base, alpha=1.5, tau=16.0)


def test_blend_moves_from_the_prior_toward_the_data_as_shots_grow():
    assert data_weight(1, 1.0) == 0.5 and data_weight(3, 1.0) == 0.75 and data_weight(5, 0.0) == 1.0
    assert data_weight(0, 2.0) == 0.0 and data_weight(1, 2.0) < data_weight(3, 2.0) < data_weight(5, 2.0)
    with pytest.raises(ConfigError, match="kappa"):
        data_weight(1, -1.0)
    centre, base = torch.zeros(D), torch.eye(D)[:2]
    prior = (torch.tensor([0, 0, 0, 0, 0, 1.0]), torch.tensor(0.3))
    z = torch.eye(D)[2:3].repeat(5, 1)
    data_w, data_b = imprinted_unit(z[0], centre, 2.0)
    dist = []
    for k in (1, 3, 5):
        w, b = blended_unit(z[:k], centre=centre, base=base, prior=prior, scale=2.0, alpha=0.0, kappa=2.0)
        lam = k / (k + 2.0)
        assert torch.allclose(w, lam * data_w + (1 - lam) * prior[0]) and float(b) == pytest.approx(0.3 * (1 - lam))
        dist.append(float((w - data_w).norm()))
    assert dist[0] > dist[1] > dist[2]
    w, _ = blended_unit(z[:1], centre=centre, base=base, prior=prior, scale=2.0, alpha=0.0, kappa=0.0)
    assert torch.allclose(w, data_w)  # kappa 0: the data row alone (plain imprinting)


def test_imprint_option_is_validated_and_off_by_default():
    assert FewShotPhase().imprint == ImprintConfig() and ImprintConfig().mode == "none"
    assert EpisodesConfig().learners == ("ncm", "component_finetune", "kept")  # the rows of today, unchanged
    cfg = parse_config({"fewshot": {"imprint": {"mode": "frozen", "alpha": 0.2, "kappa": 3},
                                    "episodes": {"learners": ["ncm", "imprint"]}}})
    assert cfg.fewshot.imprint.kappa == 3.0 and cfg.fewshot.episodes.learners[-1] == "imprint"
    for bad in ({"mode": "on"}, {"alpha": 1.5}, {"alpha": -0.1}, {"kappa": -1}, {"tau": 16}):
        with pytest.raises(ConfigError, match="imprint"):
            parse_config({"fewshot": {"imprint": bad}})


def _head() -> tuple[BasicHead, torch.Tensor]:
    centres = torch.eye(D)[:4] * 4.0  # basic 0, 1; compounds 10 (components 0 + 1) and 11 (component 0)
    return BasicHead(weight=torch.eye(D)[:2] * 2.0, bias=torch.zeros(2), centre=torch.zeros(D),
                     memory_x=centres[:2].repeat(3, 1), memory_y=torch.tensor([0, 1] * 3),
                     components={10: (0, 1), 11: (0,)}), centres


@pytest.mark.parametrize("finetune", [False, True])
def test_imprint_learner_separates_classes_its_prior_confuses(finetune):
    """Both compounds share component 0, so the prior alone cannot tell them apart; one shot each can."""
    head, centres = _head()
    g = torch.Generator().manual_seed(0)
    sx = centres[2:4] + 0.1 * torch.randn(2, D, generator=g)
    qx = centres[2:4].repeat(10, 1) + 0.5 * torch.randn(20, D, generator=g)
    kw = dict(steps=50, lr=0.05, alpha=0.3, finetune=finetune)
    pred = learner("imprint")(head, sx, torch.tensor([0, 1]), qx, [10, 11], kappa=1.0, **kw)
    assert (pred == torch.tensor([0, 1] * 10)).float().mean() > 0.9
    with pytest.raises(ConfigError, match="no basic components"):
        learner("imprint")(head, sx, torch.tensor([0, 1]), qx, [10, 12], kappa=1.0, **kw)


def test_imprint_learner_with_an_overwhelming_prior_is_the_component_head():
    head, centres = _head()
    qx = torch.randn(30, D, generator=torch.Generator().manual_seed(1))
    sx = centres[2:4]
    prior_only = learner("imprint")(head, sx, torch.tensor([0, 1]), qx, [10, 11], kappa=1e9, alpha=0.0)
    w = torch.stack([head.weight.mean(0), head.weight[0]])
    assert torch.equal(prior_only, (qx @ w.T).argmax(1))
