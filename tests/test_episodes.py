"""N-way K-shot episodes: seeded sampling, learners on a frozen embedding, the field's scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from compound_fer.errors import ConfigError
from compound_fer.evaluation.episodes import episode_accuracy, sample_episodes, summarise_episodes
from compound_fer.evaluation.metrics import balanced_accuracy, harmonic_mean, mean_confidence_interval
from compound_fer.training.episode_learners import BasicHead, component_units, learner

LABELS = np.repeat(np.arange(8), 12)  # 8 classes x 12 faces


def test_episodes_are_seeded_disjoint_and_capped():
    a = sample_episodes(LABELS, range(8), ways=5, shots=5, queries=15, count=20, seed=3)
    b = sample_episodes(LABELS, range(8), ways=5, shots=5, queries=15, count=20, seed=3)
    c = sample_episodes(LABELS, range(8), ways=5, shots=5, queries=15, count=20, seed=4)
    assert all(np.array_equal(x.query, y.query) and x.classes == y.classes for x, y in zip(a, b))
    assert any(x.classes != y.classes for x, y in zip(a, c))
    for e in a:
        assert len(set(e.classes)) == 5 and not set(e.support) & set(e.query)
        assert len(e.support) == 25 and len(e.query) == 5 * 7  # 12 faces - 5 shots: 7 queries, not 15
        assert all(LABELS[e.query[i]] == e.classes[e.query_y[i]] for i in range(len(e.query)))
    assert summarise_episodes([0.5] * 20, a)["queries_per_class_mean"] == 7


def test_too_few_classes_for_the_ways_is_refused_naming_them():
    with pytest.raises(ConfigError, match="5-way 1-shot needs 5 classes"):
        sample_episodes(LABELS, range(3), ways=5, shots=1, queries=15, count=1, seed=0)


def test_scores_match_hand_computed_values():
    assert harmonic_mean(0.5, 1.0) == pytest.approx(2 / 3)
    assert harmonic_mean(0.0, 0.9) == 0.0 and math.isnan(harmonic_mean(float("nan"), 0.5))
    # class 0: 2/2 right, class 1: 1/3 right -> mean recall 2/3 (plain accuracy 3/5)
    assert balanced_accuracy([0, 0, 1, 1, 1], [0, 0, 1, 0, 0]) == pytest.approx(2 / 3)
    mean, ci = mean_confidence_interval([0.0, 1.0, 0.0, 1.0])
    assert mean == 0.5 and ci == pytest.approx(1.96 * np.std([0, 1, 0, 1], ddof=1) / 2)
    assert episode_accuracy(np.array([0, 1, 2]), np.array([0, 1, 1])) == pytest.approx(2 / 3)


def _head(dim: int = 6) -> tuple[BasicHead, torch.Tensor]:
    centres = torch.eye(dim)[:4] * 4.0  # basic classes 0, 1 and compounds 10 (= 0 + 1), 11 (= 0 + 1 too)
    w = torch.eye(dim)[:2] * 2.0
    return BasicHead(weight=w, bias=torch.zeros(2), centre=torch.zeros(dim), memory_x=centres[:2].repeat(3, 1),
                     memory_y=torch.tensor([0, 1] * 3), components={10: (0, 1), 11: (0,)}), centres


def test_component_units_are_the_mean_of_the_basic_units():
    head, _ = _head()
    w, b = component_units(head, [10, 11])
    assert torch.allclose(w[0], head.weight.mean(0)) and torch.allclose(w[1], head.weight[0])
    with pytest.raises(ConfigError, match="no basic components"):
        component_units(head, [12])


@pytest.mark.parametrize("name", ["ncm", "component_finetune", "kept", "imprint"])
def test_every_learner_separates_well_apart_classes_from_one_shot(name):
    head, centres = _head()
    g = torch.Generator().manual_seed(0)
    sx = centres[2:4] + 0.1 * torch.randn(2, 6, generator=g)
    qx = centres[2:4].repeat(10, 1) + 0.5 * torch.randn(20, 6, generator=g)
    pred = learner(name)(head, sx, torch.tensor([0, 1]), qx, [10, 11], steps=100, lr=0.05, tau=1.0)
    assert (pred == torch.tensor([0, 1] * 10)).float().mean() > 0.9
    with pytest.raises(ConfigError, match="unknown learner"):
        learner("maml")


def test_protocol_writes_episode_rows_and_the_results_table(tmp_path, caplog):
    from compound_fer.config import parse_config
    from compound_fer.runner import run_protocol

    cfg = parse_config({
        "name": "tiny-episodes",
        "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 20, "per_subject": 1}},
        "model": {"backbone": "small_cnn", "pretrained": False},
        "basic": {"epochs": 1, "batch_size": 32},
        "continual": {"methods": [], "trainable": "head", "augment_views": 1},
        "fewshot": {"enabled": True, "shots": [], "episodes": {"enabled": True, "count": 30, "shots": [1, 50],
                                                               "queries": 2}},
        "threads": 1, "loggers": [],
    })
    with caplog.at_level("WARNING"):
        rows = run_protocol(cfg, out_dir=tmp_path, progress=False)
    assert sorted(r["learner"] for r in rows if r["kind"] == "episodes") == ["component_finetune", "kept", "ncm"]
    assert "5-way 50-shot" in caplog.text and "skipped" in caplog.text  # too few faces: left out, run stands
    table = json.loads((tmp_path / "results.json").read_text())["episodes"]
    assert {e["learner"] for e in table} == {"ncm", "component_finetune", "kept"}
    assert all(e["episodes"] == 30 and 0 <= e["accuracy_mean"] <= 1 and e["accuracy_ci95"] >= 0 for e in table)
    assert "N-way K-shot" in (tmp_path / "results.md").read_text()
    again = run_protocol(cfg, out_dir=tmp_path, progress=False, resume=True)  # the same seeded episodes
    scores = lambda rs: {(r["learner"], r["shots"]): r["accuracy_mean"] for r in rs if r["kind"] == "episodes"}  # noqa: E731
    assert scores(again) == scores(rows)
