"""The few-shot protocol: shots recorded, basic model untouched, and the two scores differ as documented."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from compound_fer import taxonomy
from compound_fer.data.faceset import FaceSet
from compound_fer.inputs import Inputs
from compound_fer.runner.fewshot import Episode, EpisodeSettings, run_episode
from compound_fer.training.fewshot import FewShotResult, fewshot_table, score_fewshot

BASIC = [taxonomy.label_of(n) for n in taxonomy.basic_names()]


def run_fewshot(*, basic_model, train, test, compound, shots, seed=0, mode="reference", inputs=None, save_to=None,
                **settings) -> FewShotResult:
    """One episode (:func:`run_episode`) from flat keywords: the episode's, then :class:`EpisodeSettings`'."""
    return run_episode(Episode(compound, shots, seed, mode), EpisodeSettings(**settings), basic_model=basic_model,
                       train=train, test=test, inputs=inputs, save_to=save_to)
NEW = "Happily surprised"


def faces(n_per_class: int, seed: int) -> FaceSet:
    """Tiny 3x4x4 'faces': each class a fixed random pattern plus noise."""
    labels = BASIC + [taxonomy.label_of(NEW)]
    patterns = torch.rand(len(labels), 3, 4, 4, generator=torch.Generator().manual_seed(7)) * 200
    g = torch.Generator().manual_seed(seed)
    imgs, ys = [], []
    for k, lab in enumerate(labels):
        noise = torch.randn(n_per_class, 3, 4, 4, generator=g) * 20
        imgs.append((patterns[k] + noise).clamp(0, 255).to(torch.uint8))
        ys += [lab] * n_per_class
    n = len(ys)
    return FaceSet(images=torch.cat(imgs), labels=torch.tensor(ys), subjects=torch.arange(n) % 5)


def tiny_basic_model() -> nn.Module:
    """A real FERModel + GrowingHead on a tiny MLP, trained on the 6 basic classes."""
    from compound_fer.models import FERModel, GrowingHead

    torch.manual_seed(0)
    tail = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU())
    model = FERModel(trunk=nn.Identity(), tail=tail, head=GrowingHead(in_features=16, num_classes=6, dropout=0.0),
                     feature_dim=16, target_layer=tail[1], freeze_bn=False, image_size=4)
    tr = faces(20, seed=1).where(labels=BASIC)
    x, y = tr.float_images(), torch.as_tensor([BASIC.index(int(v)) for v in tr.labels])
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def data():
    return tiny_basic_model(), faces(20, seed=1), faces(10, seed=2)


def test_score_fewshot_new_class_only_predictor():
    """A model that always answers the new class: recall 1.0, 7-way accuracy exactly 1/7, basic 0."""
    y_true = np.repeat(np.arange(7), 10)
    y_pred = np.full(70, 6)
    s = score_fewshot(y_true, y_pred, new_class=6, basic_classes=range(6))
    assert s["new_class_recall"] == 1.0
    assert s["seven_way_accuracy"] == pytest.approx(1 / 7)
    assert s["basic_accuracy"] == 0.0


def test_one_shot_recall_hides_forgotten_basics(data):
    """Trained hard on one shot of the new class only, the model calls everything the new class: the
    reference's number (recall) is 100% while the honest 7-way accuracy collapses."""
    basic, train, test = data
    before = copy.deepcopy(basic.state_dict())
    res = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=1, seed=3,
                      epochs=40, lr=0.05, batch_size=32)
    assert isinstance(res, FewShotResult)
    assert res.basic_accuracy_before > 0.9  # the stand-in basic model is good
    assert res.new_class_recall == 1.0
    assert res.seven_way_accuracy < 0.5
    assert res.basic_accuracy < res.basic_accuracy_before - 0.4
    assert res.n_way == 7 and res.n_test_new == 10 and res.n_test_basic == 60
    # The basic model is left untouched.
    assert all(torch.equal(before[k], v) for k, v in basic.state_dict().items())


def test_gentle_fewshot_keeps_basics(data):
    """With a small step the distilled model keeps most basic accuracy: the 7-way score tells them apart."""
    basic, train, test = data
    res = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=3, seed=0, epochs=5, lr=1e-3)
    assert res.basic_accuracy > 0.8
    assert res.seven_way_accuracy > 0.7


def test_shots_recorded_and_reproducible(data):
    basic, train, test = data
    a = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=3, seed=5, epochs=1)
    b = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=3, seed=5, epochs=1)
    c = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=3, seed=6, epochs=1)
    assert len(a.shot_indices) == 3
    assert all(int(train.labels[i]) == taxonomy.label_of(NEW) for i in a.shot_indices)
    assert a.shot_indices == b.shot_indices and a.new_class_recall == b.new_class_recall
    assert a.shot_indices != c.shot_indices
    assert a.settings["gamma"] == pytest.approx(0.1) and a.settings["temperature"] == 3.0


def test_cached_inputs_path(data):
    """Cached 'trunk maps' (N, views, C, h, w) train the tail + head like images do (identity trunk here)."""
    basic, train, test = data
    tr_maps = train.float_images()[:, None].repeat(1, 2, 1, 1, 1)
    te_maps = test.float_images()[:, None]
    res = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=1, seed=0, epochs=40,
                      lr=0.05, inputs=Inputs(train=tr_maps, test=te_maps, cached=True))
    assert res.new_class_recall == 1.0 and res.seven_way_accuracy < 0.5


def test_fewshot_table_means_and_stds():
    mk = lambda c, k, r, s, b: dict(compound=c, shots=k, new_class_recall=r, seven_way_accuracy=s,  # noqa: E731
                                    basic_accuracy=b)
    rows = fewshot_table([mk("A", 1, 1.0, 0.2, 0.1), mk("B", 1, 0.5, 0.4, 0.3), mk("A", 3, 0.8, 0.6, 0.5)])
    by = {(r["compound"], r["shots"]): r for r in rows}
    assert [(r["compound"], r["shots"]) for r in rows] == [("all", 1), ("A", 1), ("B", 1), ("all", 3), ("A", 3)]
    assert by[("all", 1)]["n"] == 2
    assert by[("all", 1)]["new_class_recall_mean"] == pytest.approx(0.75)
    assert by[("all", 1)]["new_class_recall_std"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert by[("all", 1)]["seven_way_accuracy_mean"] == pytest.approx(0.3)
    assert by[("A", 3)]["basic_accuracy_mean"] == 0.5 and by[("A", 3)]["basic_accuracy_std"] == 0.0


def test_kept_mode_keeps_the_basic_classes_where_the_reference_mode_forgets_them(data):
    """The same hard one-shot episode: the reference mode answers the new class for everything, the kept
    mode (PSMR memory of basic faces + KD + component-initialised output) keeps the basic classes."""
    basic, train, test = data
    kw = dict(basic_model=basic, train=train, test=test, compound=NEW, shots=1, seed=3, epochs=40, lr=0.05)
    ref = run_fewshot(**kw)
    kept = run_fewshot(**kw, mode="kept", quota=5)
    assert ref.basic_accuracy < ref.basic_accuracy_before - 0.4
    assert kept.basic_accuracy >= 0.9 * kept.basic_accuracy_before
    assert kept.seven_way_accuracy > ref.seven_way_accuracy + 0.3
    assert kept.settings["mode"] == "kept" and ref.settings["mode"] == "reference"


def test_kept_mode_memory_selection_picks_other_basic_faces_and_is_recorded(data):
    """``memory_selection`` reaches the kept episode's PSMR memory: ``spread`` keeps other basic faces than the
    paper's ``top`` from the same ranking, and the row says which one ran."""
    from compound_fer.runner.fewshot import build

    basic, train, test = data
    kept = {}
    for pick in ("top", "spread"):
        run = build(Episode(NEW, 1, 0, "kept"), EpisodeSettings(quota=5, memory_selection=pick), basic_model=basic,
                    train=train, test=test, inputs=Inputs.of_images(train=train, test=test))
        kept[pick] = {c: list(v) for c, v in run.strategy.psmr.buffer.class_order.items()}
    assert kept["top"].keys() == kept["spread"].keys() and all(len(v) == 5 for v in kept["spread"].values())
    assert kept["top"] != kept["spread"]
    res = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=1, epochs=1, mode="kept",
                      quota=3, memory_selection="spread")
    assert res.settings["memory_selection"] == "spread"


def test_fewshot_memory_selection_is_read_from_the_config():
    from compound_fer.config import parse_config

    cfg = parse_config({"fewshot": {"mode": "kept", "memory_selection": "spread"}})
    assert EpisodeSettings.from_config(cfg, mode="kept", quota=4).memory_selection == "spread"
    with pytest.raises(Exception, match="memory_selection"):
        parse_config({"fewshot": {"memory_selection": "best"}})


def test_kept_mode_saves_a_model_that_reloads(data, tmp_path):

    basic, train, test = data
    basic.name, basic.image_size = "custom", 4
    run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=1, seed=0, epochs=1, mode="kept",
                quota=3, save_to=tmp_path / "fewshot.pt")
    meta = __import__("json").loads((tmp_path / "fewshot.json").read_text())
    assert meta["method"] == "fewshot-kept" and meta["classes"][-1] == NEW and meta["shots"] == 1


def test_unknown_fewshot_mode_is_a_config_error(data):
    from compound_fer.errors import ConfigError

    basic, train, test = data
    with pytest.raises(ConfigError, match="fewshot.mode"):
        run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=1, mode="gentle")


def test_zero_shot_row_builds_the_output_from_the_components_and_trains_nothing(data):
    basic, train, test = data
    before = copy.deepcopy(basic.state_dict())
    res = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=0)
    assert res.shots == 0 and res.shot_indices == [] and res.settings["mode"] == "zero-shot"
    assert 0.0 <= res.seven_way_accuracy <= 1.0 and res.n_test_new == 10
    assert all(torch.equal(before[k], v) for k, v in basic.state_dict().items())


def test_kept_mode_imprint_frozen_sets_the_blend_and_trains_nothing_else(data):
    """fewshot.imprint frozen: the new unit is the blend of the shots and the components' prior, the basic
    rows stay the basic model's and the row says which learner ran; none leaves the kept row as it was."""
    from compound_fer.config import ImprintConfig
    from compound_fer.runner.fewshot import build, train_episode
    from compound_fer.training.imprinting import ImprintPlugin

    basic, train, test = data
    frozen = ImprintConfig(mode="frozen", alpha=0.5, kappa=1.0)
    run = build(Episode(NEW, 3, 0, "kept"), EpisodeSettings(quota=3, imprint=frozen), basic_model=basic, train=train,
                test=test, inputs=Inputs.of_images(train=train, test=test))
    train_episode(run)
    w = run.student.head.classifier.weight
    assert torch.equal(w[:6], basic.head.classifier.weight)
    plugin = next(p for p in run.strategy.plugins if isinstance(p, ImprintPlugin))
    assert plugin.set == [{"label": 6, "shots": 3, "data_weight": 0.75}]
    assert not torch.allclose(w[6], basic.head.classifier.weight[[0, 3]].mean(0))  # not the prior alone
    res = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=1, mode="kept", quota=3,
                      imprint=frozen)
    assert res.settings["imprint"] == {"mode": "frozen", "alpha": 0.5, "kappa": 1.0, "tau": 16.0}
    plain = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=1, epochs=1, mode="kept",
                        quota=3)
    assert plain.settings["imprint"] == "none"
