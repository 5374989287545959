"""Relationship measures against hand-computed values, and the pointing game of a model trained on
synthetic faces (regions known) far above chance."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from compound_fer import taxonomy
from compound_fer.explain import relationship as R

BASIC = [taxonomy.label_of(n) for n in taxonomy.basic_names()]
COMPOUND = [taxonomy.label_of(n) for n in taxonomy.compound_names()]


# ------------------------------------------------------------------ similarity


def test_pearson_and_intersection_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert R.pearson(a, a) == pytest.approx(1.0)
    assert R.pearson(a, b) == pytest.approx(-1.0)
    assert R.pearson(a, np.array([[1.0, 1.0], [0.0, 1.0]])) == pytest.approx(1 / math.sqrt(3))
    assert math.isnan(R.pearson(a, np.ones((2, 2))))
    # unit-mass maps: a -> [.5 0 0 .5], c -> [.25 .25 0 .5]; sum of minima = .25 + 0 + 0 + .5
    c = np.array([[1.0, 1.0], [0.0, 2.0]])
    assert R.histogram_intersection(a, c) == pytest.approx(0.75)
    assert R.histogram_intersection(a, 7 * a) == pytest.approx(1.0)
    assert R.histogram_intersection(a, b) == pytest.approx(0.0)


def test_component_chance_matches_enumeration():
    """Exact chance levels equal a brute-force enumeration of all 720 rankings of the 6 basic classes."""
    n, comps = 6, {0, 1}
    perms = list(itertools.permutations(range(n)))
    top1 = np.mean([p[0] in comps for p in perms])
    all2 = np.mean([set(p[:2]) == comps for p in perms])
    best = np.mean([min(p.index(c) for c in comps) + 1 for p in perms])
    mean_rank = np.mean([np.mean([p.index(c) + 1 for c in comps]) for p in perms])
    ch = R.component_chance(n, 2)
    assert ch["top1"] == pytest.approx(top1) == pytest.approx(1 / 3)
    assert ch["all_top_k"] == pytest.approx(all2) == pytest.approx(1 / 15)
    assert ch["best_rank"] == pytest.approx(best) == pytest.approx(7 / 3)
    assert ch["mean_rank"] == pytest.approx(mean_rank) == pytest.approx(3.5)


def test_poisson_binomial_tail_is_the_binomial_tail():
    for k in range(16):
        expected = sum(math.comb(15, j) * (1 / 3) ** j * (2 / 3) ** (15 - j) for j in range(k, 16))
        assert R.poisson_binomial_tail([1 / 3] * 15, k) == pytest.approx(expected)


def _blob(center, size=24, sigma=3.0):
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * sigma**2))


def test_compounds_built_from_their_components_are_found():
    """Compound maps = mean of the components' maps (+ noise): every compound hits, with the exact p-value."""
    rng = np.random.default_rng(0)
    centres = [(4, 4), (4, 19), (12, 12), (19, 4), (19, 19), (12, 3)]
    basic = {b: _blob(c) for b, c in zip(BASIC, centres)}
    compound = {}
    for c in COMPOUND:
        a, b = taxonomy.component_labels(taxonomy.name_of(c))
        compound[c] = (basic[a] + basic[b]) / 2 + 0.01 * rng.random((24, 24))
    rel = R.relationship_from_cams(basic, compound)
    json.dumps(rel)  # JSON-able
    for measure in ("pearson", "intersection"):
        s = rel[measure]["components"]["summary"]
        assert s["n_compounds"] == 15 and s["top1_hits"] == 15 and s["all_top_k_rate"] == 1.0
        assert s["top1_chance"] == pytest.approx(1 / 3)
        assert s["top1_p_value"] == pytest.approx((1 / 3) ** 15)
        assert s["mean_best_rank"] == 1.0 and s["mean_best_rank_chance"] == pytest.approx(7 / 3)
        assert np.array(rel[measure]["matrix"]).shape == (15, 6)
    per = rel["pearson"]["components"]["per_compound"]
    assert set(per["Happily surprised"]["ranking"][:2]) == {"Happy", "Surprised"}


def test_unrelated_compounds_score_near_chance():
    """Maps with no relation to the components: the hit rate is not significant."""
    rng = np.random.default_rng(1)
    basic = {b: rng.random((16, 16)) for b in BASIC}
    hits = []
    for seed in range(20):
        r2 = np.random.default_rng(100 + seed)
        compound = {c: r2.random((16, 16)) for c in COMPOUND}
        hits.append(R.relationship_from_cams(basic, compound)["pearson"]["components"]["summary"]["top1_rate"])
    assert abs(np.mean(hits) - 1 / 3) < 0.08


# ------------------------------------------------------------------ regions


def test_region_shares_and_pointing_by_hand():
    cams = np.zeros((2, 4, 4))
    cams[0, 0, 0] = 3.0
    cams[0, 3, 3] = 1.0
    cams[1] = 1.0  # flat CAM: no peak at all
    masks = np.zeros((2, 5, 4, 4), dtype=bool)
    masks[:, 0, :2, :2] = True  # brows: top-left 2x2 (area 4/16)
    masks[:, 3, 2:, 2:] = True  # mouth: bottom-right 2x2
    shares = R.region_shares(cams, masks)
    np.testing.assert_allclose(shares[0], [0.75, 0, 0, 0.25, 0])
    np.testing.assert_allclose(shares[1], [0.25, 0, 0, 0.25, 0])
    hit, chance = R.pointing_game(cams, masks[:, 3])  # expect the mouth
    np.testing.assert_allclose(hit, [0.0, 0.25])  # peak on the brows; flat CAM scores exactly chance
    np.testing.assert_allclose(chance, [0.25, 0.25])
    hit, _ = R.pointing_game(cams, masks[:, 0])
    assert hit[0] == 1.0


def test_expected_regions_from_class_or_aus():
    masks = np.zeros((2, 5, 4, 4), dtype=bool)
    for r in range(5):
        masks[:, r, r % 4, :] = True
    happy = taxonomy.label_of("Happy")  # AU12, AU25: mouth
    exp, names = R.expected_region_masks(masks, [happy, happy], expected="class")
    assert names[0] == ("mouth",)
    np.testing.assert_array_equal(exp[0], masks[0, 3])
    aus = np.zeros((2, len(taxonomy.ACTION_UNITS)))
    aus[1, taxonomy.ACTION_UNITS.index(1)] = 0.8  # AU1 only: brows
    exp, names = R.expected_region_masks(masks, [happy, happy], expected="aus", aus=aus)
    assert names == [(), ("brows",)]
    assert not exp[0].any() and np.array_equal(exp[1], masks[1, 0])


def test_region_attention_report_is_json_and_per_class():
    rng = np.random.default_rng(2)
    n = 12
    labels = np.array([taxonomy.label_of("Happy")] * 6 + [taxonomy.label_of("Surprised")] * 6)
    masks = np.zeros((n, 5, 8, 8), dtype=bool)
    masks[:, 0, :2] = True
    masks[:, 3, 5:7] = True
    cams = rng.random((n, 8, 8)) * 0.1
    cams[:, 6, 3] = 1.0  # every peak on the mouth, an expected region of both classes
    rep = R.region_attention(cams, labels, masks)
    json.dumps(rep)
    assert rep["overall"]["pointing"] == 1.0
    assert rep["overall"]["pointing_chance"] == pytest.approx((16 / 64 + 32 / 64) / 2)  # mouth; brows + mouth
    assert rep["per_class"]["Happy"]["expected_regions"] == ["mouth"]
    assert rep["per_class"]["Surprised"]["expected_regions"] == ["brows", "mouth", "chin"]
    spec = rep["specificity"]
    assert spec["mouth"]["not_expected"] is None and spec["mouth"]["difference"] is None  # both expect it
    assert spec["brows"]["n_expected"] == 1 and spec["brows"]["n_not_expected"] == 1
    assert spec["brows"]["difference"] == pytest.approx(
        rep["per_class"]["Surprised"]["region_shares"]["brows"] - rep["per_class"]["Happy"]["region_shares"]["brows"])


# ------------------------------------------------------------------ a trained model on synthetic faces

SYNTH_CLASSES = ("Happy", "Surprised", "Disgusted")


@pytest.fixture(scope="module")
def synthetic_model():
    from compound_fer.data.synthetic import generate
    from compound_fer.explain.pipeline import accuracy, train_synthetic_model

    train = generate(categories=SYNTH_CLASSES, n_subjects=20, per_subject=2, image_size=64, seed=0, nuisance=False)
    test = generate(categories=SYNTH_CLASSES, n_subjects=12, per_subject=2, image_size=64, seed=0,
                    subject_offset=500, nuisance=False)
    model, order = train_synthetic_model(train, epochs=12, seed=0)
    acc = accuracy(model, test, order)
    assert acc > 0.5, f"small_cnn did not learn the synthetic faces (held-out accuracy {acc:.2f})"
    return model, order, test


def test_pointing_game_far_above_chance_on_synthetic_faces(synthetic_model):
    """Where the moved regions are known, the CAM maximum falls in them far more often than chance."""
    model, order, test = synthetic_model
    labels = [taxonomy.label_of(n) for n in SYNTH_CLASSES]
    cc = R.explain_classes(model, test, labels=labels, method="gradcam", class_order=order)
    for expected in ("class", "aus"):
        rep = R.region_attention(cc.cams, cc.labels, cc.region_masks, expected=expected, aus=cc.aus)["overall"]
        assert rep["pointing"] >= 2.0 * rep["pointing_chance"], (expected, rep)
        assert rep["expected_share"] > rep["expected_area"], (expected, rep)


def test_relationship_report_end_to_end(synthetic_model, tmp_path):
    """The JSON-able report with the few-shot route: compounds explained by their own model."""
    model, order, test = synthetic_model
    basic = [taxonomy.label_of(n) for n in ("Happy", "Surprised")]
    compound = [taxonomy.label_of("Disgusted")]  # stands in for a compound: explained by a second model
    rep = R.relationship_report(model, test, basic_labels=basic, compound_labels=[], method="guided",
                                class_order=order)
    json.dumps(rep)
    assert "relationship" not in rep and rep["region_attention"]["overall"]["n"] == len(test.where(labels=basic))
    rep2 = R.relationship_report(model, test, basic_labels=basic, compound_labels=compound, method="gradcam",
                                 class_order=order, compound_models={compound[0]: (model, order)})
    assert rep2["compound_cams_from"] == "few-shot models"
    assert rep2["images_per_class"]["Disgusted"] == len(test.where(labels=compound))
    assert model.training is False


# ------------------------------------------------------------------ figures


def test_overlay_keeps_rgb_order():
    """HOT colormap at mid intensity is red-orange: red must dominate blue (BGR would flip them)."""
    from compound_fer.explain.figures import overlay

    img = np.zeros((8, 8, 3), dtype=np.uint8)
    cam = np.full((8, 8), 0.4, dtype=np.float32)
    out = overlay(img, cam, alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    assert out[..., 0].mean() > 3 * out[..., 2].mean() + 10
    chw = overlay(np.zeros((3, 8, 8), dtype=np.uint8), cam, alpha=1.0)
    np.testing.assert_array_equal(chw, out)


def test_figures_written_and_closed(tmp_path):
    import matplotlib.pyplot as plt

    from compound_fer.explain import figures as F

    rng = np.random.default_rng(3)
    basic = {b: rng.random((16, 16)) for b in BASIC}
    compound = {c: rng.random((16, 16)) for c in COMPOUND}
    images = {k: rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for k in [*BASIC, *COMPOUND]}
    rel = R.relationship_from_cams(basic, compound)
    att = R.region_attention(rng.random((4, 16, 16)), [BASIC[0]] * 2 + [COMPOUND[0]] * 2,
                             rng.random((4, 5, 16, 16)) > 0.7)
    before = len(plt.get_fignums())
    paths = []
    paths += F.subject_figure(images, {**basic, **compound}, tmp_path / "subject", basic_labels=BASIC,
                              compound_labels=COMPOUND)
    paths += F.mean_cam_grid({**basic, **compound}, tmp_path / "means.png")
    paths += F.relationship_heatmap(rel["pearson"]["matrix"], tmp_path / "heat", compound_labels=COMPOUND,
                                    basic_labels=BASIC)
    paths += F.region_bars(att, tmp_path / "regions")
    assert len(paths) == 8 and all(p.stat().st_size > 1000 for p in paths)
    assert {p.suffix for p in paths} == {".png", ".pdf"}
    assert len(plt.get_fignums()) == before


def test_gradcam_command_synthetic(tmp_path, capsys):
    """`compound-fer gradcam --synthetic` writes the JSON report (with provenance) and every figure."""
    from compound_fer.cli import main

    out = tmp_path / "gc"
    rc = main(["gradcam", "--synthetic", "--classes", "Happy,Surprised,Happily surprised", "--epochs", "1",
               "--subjects", "3", "--method", "gradcam", "--out", str(out)])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"commit", "machine", "relationship", "region_attention", "test_accuracy"} <= set(rep)
    assert rep["relationship"]["pearson"]["components"]["summary"]["n_compounds"] == 1
    names = {p.name for p in out.iterdir()}
    for stem in ("gradcam_subject", "gradcam_mean_cams", "gradcam_relationship_pearson", "gradcam_regions"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert "pointing game" in capsys.readouterr().out


def test_gradcam_command_explains_the_config_split(tmp_path, capsys):
    """`--model --config --split test --seed` rebuilds the protocol's split and explains only its test
    subjects (faces no model of that run trained on); --split without --config is refused."""
    from compound_fer import runner
    from compound_fer.cli import main
    from compound_fer.config import load_config
    from compound_fer.model_io import save_model
    from compound_fer.models import build_model

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text("name: tiny\ndata: {source: synthetic, image_size: 64, synthetic: {n_subjects: 10, "
                        "per_subject: 1, seed: 3}}\nevaluation: {mode: strict, val_fraction: 0.2, test_fraction: 0.3}\n"
                        "model: {backbone: small_cnn, pretrained: false}\nseeds: [0]\n")
    classes = ["Happy", "Surprised", "Happily surprised"]
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, pretrained=False, image_size=64)
    weights = save_model(model, tmp_path / "m.pt", meta={"classes": classes, "backbone": "small_cnn", "image_size": 64})
    out = tmp_path / "gc"
    rc = main(["gradcam", "--model", str(weights), "--config", str(cfg_path), "--split", "test", "--seed", "1",
               "--method", "gradcam", "--out", str(out)])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    cfg = load_config(cfg_path)
    splits = runner.make_splits(cfg, runner.load_dataset(cfg, progress=False), seed=1)
    labels = [taxonomy.label_of(n) for n in classes]
    test = splits.test.where(labels=labels)
    assert rep["n_images"] == len(test) > 0
    assert rep["faces"]["split"] == "test" and rep["faces"]["seed"] == 1
    assert rep["faces"]["images"] == len(splits.test)
    assert not set(splits.test.subjects.tolist()) & set(splits.train.subjects.tolist())
    assert rep["relationship"]["pearson"]["components"]["summary"]["n_compounds"] == 1

    capsys.readouterr()
    assert main(["gradcam", "--model", str(weights), "--data", str(tmp_path), "--split", "test",
                 "--out", str(out)]) == 2
    assert "--split test needs --config" in capsys.readouterr().err
