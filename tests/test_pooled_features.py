"""Head-only steps on cached pooled embeddings (issue 28): the tail is frozen, so each cached view's pooled
embedding is computed once per seed and a step trains a linear layer on it. The rows must not move: a tiny
protocol with ``cache_pooled`` on and off gives the same results, only the seconds differ."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from compound_fer.config import parse_config
from compound_fer.features import CachedTrunkModel, PickView, PooledFeatureModel, pooled_features

TINY = {
    "name": "tiny-pooled",
    "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 12, "per_subject": 1, "seed": 0}},
    "evaluation": {"mode": "strict", "val_fraction": 0.2, "test_fraction": 0.25},
    "model": {"backbone": "small_cnn", "pretrained": False},
    "basic": {"epochs": 1, "lr": 0.002, "batch_size": 32, "patience": 3},
    "continual": {"methods": ["kdpsmr", "replay", "icarl", "ncm", "gdumb", "omni"], "orders": 1, "epochs": 2,
                  "lr": 0.001, "augment_views": 2, "trainable": "head", "component_init": True},
    "fewshot": {"enabled": True, "shots": [1], "compounds": ["Awed"], "epochs": 1, "mode": "both",
                "episodes": {"enabled": True, "count": 4, "queries": 2, "shots": [1]}},
    "threads": 1,
    "loggers": ["csv"],
}
TIMES = {"seconds", "step_seconds", "train_seconds_after_basic", "trunk_cache_seconds"}


def _results(rows: list[dict]) -> list[str]:
    """Each row without its timings, as JSON text (NaN entries compare equal)."""
    return [json.dumps({k: v for k, v in r.items() if k not in TIMES}, sort_keys=True) for r in rows]


@pytest.mark.slow
def test_head_only_rows_are_the_same_on_pooled_embeddings_as_on_maps(tmp_path):
    from compound_fer.runner import run_protocol

    cfg = parse_config(TINY)
    on = run_protocol(cfg, out_dir=tmp_path / "on", progress=False)
    off = run_protocol(cfg.with_overrides(cache_pooled=False), out_dir=tmp_path / "off", progress=False)
    assert {r["kind"] for r in on} >= {"basic", "continual", "fewshot", "episodes"}
    assert _results(on) == _results(off)


def test_methods_that_read_the_spatial_layout_keep_the_maps_and_icarl_gets_mirrored_pairs():
    from compound_fer.training.registry import available

    assert {name for name, e in available().items() if e.needs_maps} == {"omni"}
    assert {name for name, e in available().items() if e.flips_inputs} == {"icarl"}


def test_mirrored_pairs_flip_as_the_maps_do():
    """iCaRL's class means call ``torch.flip(x, [3])``: on a mirrored pair that gives the flipped map's
    embedding, as flipping the maps and pooling them would."""
    from compound_fer.inputs import Inputs
    from compound_fer.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, pretrained=False, image_size=32)
    model.set_trainable("head")
    maps = model.trunk(torch.rand(4, 3, 32, 32)).detach()[:, None]  # (N, 1 view, C, h, w)
    inputs = Inputs(train=maps, test=maps, cached=True).with_embeddings(model, progress=False, mirrored=True)
    pairs = inputs.for_trainable("head", mirrored=True)
    assert pairs.mirrored and pairs.test_x.shape[1:] == (model.feature_dim, 1, 2)
    net, head = CachedTrunkModel(model=model).eval(), PooledFeatureModel(model=model)
    with torch.no_grad():
        assert torch.equal(head.features(pairs.test_x), net.features(maps[:, 0]))
        assert torch.equal(head.features(torch.flip(pairs.test_x, [3])), net.features(torch.flip(maps[:, 0], [3])))
        assert torch.equal(head(pairs.test_x), net(maps[:, 0]))
    assert inputs.for_trainable("head") is inputs.embedded and not inputs.embedded.mirrored
    assert inputs.for_trainable("tail_head", mirrored=True) is inputs


def test_pooled_features_are_the_tail_of_every_view():
    from compound_fer.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, pretrained=False, image_size=32)
    model.set_trainable("head")
    maps = model.trunk(torch.rand(5, 3, 32, 32)).detach()
    rows = torch.stack([maps, maps.flip(-1)], dim=1)  # (N, 2 views, C, h, w)
    z = pooled_features(CachedTrunkModel(model=model), rows, progress=False)
    assert z.shape == (5, 2, model.feature_dim)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(z[:, 1], model.tail(maps.flip(-1)), atol=1e-6)
        net = PooledFeatureModel(model=model).eval()
        assert torch.allclose(net(z[:, 0]), model.forward_from_trunk(maps), atol=1e-5)
    assert net.head is model.head  # training the pooled net trains the model's own head


def test_pick_view_of_embeddings_takes_one_row_of_the_view_axis():
    z = torch.arange(6.0).reshape(3, 2)  # 3 views of a 2-d embedding
    assert torch.equal(PickView(random=False, event_dims=1)(z), z[0])
    assert PickView(random=True, event_dims=1)(z).shape == (2,)
    assert torch.equal(PickView(random=True, event_dims=1)(z[0]), z[0])  # already one view


def test_steps_that_train_the_tail_keep_the_maps():
    from compound_fer.inputs import Inputs

    maps = torch.rand(4, 2, 8, 2, 2)
    inputs = Inputs(train=maps, test=maps[:, :1], cached=True)
    emb = replace_embedded(inputs)
    assert inputs.for_trainable("tail_head") is inputs
    assert emb.for_trainable("tail_head") is emb and emb.for_trainable("head") is emb.embedded
    with pytest.raises(ValueError, match="cached trunk maps"):
        Inputs(train=maps[:, 0, :, 0, 0], test=maps[:, 0, :, 0, 0]).with_embeddings(torch.nn.Identity())


def replace_embedded(inputs):  # noqa: ANN001, ANN201 - a stand-in pooled copy, no model needed
    from dataclasses import replace

    return replace(inputs, embedded=replace(copy.copy(inputs), pooled=True))
