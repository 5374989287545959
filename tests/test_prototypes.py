"""Class prototypes in the head: imprinting gives a one-shot class a direction of its own, nearest class
mean (ncm) predicts exactly the closest centred class mean, and ncm refuses an embedding that moves."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_fewshot import BASIC, NEW, faces, run_fewshot, tiny_basic_model

from compound_fer.config import parse_config
from compound_fer.errors import ConfigError
from compound_fer.runner import run_protocol
from compound_fer.training.prototypes import PrototypePlugin, prototypes


@pytest.fixture(scope="module")
def data():
    return tiny_basic_model(), faces(20, seed=1), faces(10, seed=2)


def test_prototypes_are_unit_means_of_centred_normalised_embeddings():
    feats = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    means = prototypes(feats, torch.tensor([0, 0, 1]), centre=torch.zeros(2))
    assert torch.allclose(means[0], torch.tensor([1.0, 0.0])) and torch.allclose(means[1], torch.tensor([0.0, 1.0]))


def test_imprinting_lets_one_shot_find_its_class_where_the_component_prior_alone_does_not(data):
    """The same one-shot kept episode with almost no training (1 epoch, tiny lr): the component prior
    alone leaves the new class unrecognised; the imprinted unit already finds it, basic classes kept."""
    basic, train, test = data
    kw = dict(basic_model=basic, train=train, test=test, compound=NEW, shots=1, seed=3, epochs=1, lr=1e-6,
              mode="kept", quota=5, trainable="head")
    prior = run_fewshot(**kw)
    imprint = run_fewshot(**kw, prototypes="imprint")
    assert imprint.settings["prototypes"] == "imprint"
    assert imprint.new_class_recall >= prior.new_class_recall + 0.5
    assert imprint.basic_accuracy >= 0.8 * imprint.basic_accuracy_before


def test_ncm_predicts_the_nearest_centred_class_mean(data):
    from types import SimpleNamespace

    from compound_fer.scenarios import fewshot_benchmark

    basic, train, test = data
    bench = fewshot_benchmark(train=train, test=test, compound=NEW, shots=3, seed=0)
    model = copy.deepcopy(basic)
    model.head.grow(1)
    plugin = PrototypePlugin(mode="ncm")
    for exp in bench.train_stream:
        strategy = SimpleNamespace(model=model, experience=exp)
        plugin.before_training_exp(strategy)
        plugin.after_training_exp(strategy)
    model.eval()
    x = test.float_images()
    with torch.no_grad():
        emb, logits = model.features(x), model(x)
    means = torch.stack([plugin.means[c] for c in range(len(BASIC) + 1)])
    by_hand = (F.normalize(emb - plugin.centre, dim=1) @ means.T).argmax(1)
    assert torch.equal(logits.argmax(1), by_hand)
    assert sorted(plugin.means) == list(range(len(BASIC) + 1))


def test_kept_episode_with_ncm_scores_the_new_class(data):
    basic, train, test = data
    res = run_fewshot(basic_model=basic, train=train, test=test, compound=NEW, shots=3, seed=0, epochs=1,
                      mode="kept", quota=5, trainable="head", prototypes="ncm")
    assert res.settings["prototypes"] == "ncm" and res.new_class_recall > 0.5


def test_ncm_is_a_method_and_refuses_an_embedding_that_kept_episodes_train():
    with pytest.raises(ConfigError, match="method ncm"):
        parse_config({"continual": {"prototypes": "ncm", "trainable": "head"}})
    with pytest.raises(ConfigError, match="continual.trainable: head"):
        parse_config({"fewshot": {"prototypes": "ncm"}, "continual": {"trainable": "tail_head"}})
    with pytest.raises(ConfigError, match="prototypes"):
        PrototypePlugin(mode="median")


def _tiny_run(tmp_path, **continual) -> dict:
    """The continual row of a tiny synthetic protocol with ``continual`` settings (head-only steps)."""
    cfg = parse_config({
        "name": "tiny-prototypes",
        "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 10, "per_subject": 1}},
        "model": {"backbone": "small_cnn", "pretrained": False},
        "basic": {"epochs": 1, "batch_size": 32},
        "continual": {"orders": 1, "epochs": 1, "trainable": "head", "augment_views": 1, **continual},
        "fewshot": {"enabled": False}, "threads": 1, "loggers": [],
    })
    rows = run_protocol(cfg, out_dir=tmp_path, progress=False)
    row = next(r for r in rows if r["kind"] == "continual")
    assert len(row["step_accuracy"]) == 16
    return row


def test_ncm_method_trains_nothing_and_predicts_from_stored_means(tmp_path):
    from compound_fer.model_io import load_model

    assert _tiny_run(tmp_path, methods=["ncm"])["method"] == "ncm"
    basic, _ = load_model(tmp_path / "models" / "basic_seed0.pt")
    ncm, _ = load_model(tmp_path / "models" / "ncm_seed0.pt")
    for name, value in basic.state_dict().items():  # nothing but the head's units changed
        if not name.startswith("head."):
            assert torch.equal(value, ncm.state_dict()[name]), name


def test_protocol_with_imprinted_prototypes_runs_and_saves_a_plain_model(tmp_path):
    _tiny_run(tmp_path, methods=["kdpsmr"], prototypes="imprint", component_init=True)
    assert (tmp_path / "models" / "kdpsmr_seed0.pt").is_file()


def test_the_basic_units_are_not_imprinted(data):
    """Experience 0 sets the centre and the scale only: the trained basic units stay as they were."""
    from types import SimpleNamespace

    from compound_fer.scenarios import fewshot_benchmark

    basic, train, test = data
    bench = fewshot_benchmark(train=train, test=test, compound=NEW, shots=1, seed=0)
    model = copy.deepcopy(basic)
    before = model.head.classifier.weight.detach().clone()
    plugin = PrototypePlugin(mode="imprint")
    plugin.before_training_exp(SimpleNamespace(model=model, experience=bench.train_stream[0]))
    assert torch.equal(model.head.classifier.weight, before) and plugin.centre is not None
    assert sorted(plugin.means) == list(range(len(BASIC)))
