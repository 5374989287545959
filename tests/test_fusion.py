"""Landmark geometry fused inside the model: packing, the fused features, cached maps, component init."""

import numpy as np
import pytest
import torch

from compound_fer import taxonomy
from compound_fer.features import CachedTrunkModel
from compound_fer.fusion import GeometryEncoder, pack, standardiser
from compound_fer.models import build_model
from compound_fer.training.component_init import component_rows, init_from_components


def _model(n_geo=20, classes=6):
    torch.manual_seed(0)
    m = build_model("small_cnn", num_classes=classes, image_size=32)
    g = torch.randn(50, n_geo) * 3 + 1
    mean, std = standardiser(g)
    return m.attach_geometry(GeometryEncoder(mean=mean, std=std)).eval(), mean, std


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (4, 2, 5, 4, 4)])
def test_pack_then_split_gives_back_both_parts(shape):
    x, g = torch.rand(shape), torch.randn(4, 37)
    enc = GeometryEncoder(mean=torch.zeros(37), std=torch.ones(37))
    packed = pack(x, g)
    assert packed.shape[-3] == shape[-3] + int(np.ceil(37 / (shape[-1] * shape[-2])))
    views = [packed] if len(shape) == 4 else [packed[:, v] for v in range(shape[1])]
    for i, p in enumerate(views):
        img, geo = enc.split(p)
        assert torch.equal(img, x if len(shape) == 4 else x[:, i])
        assert torch.equal(geo, g)


def test_fused_features_are_cnn_embedding_then_standardised_geometry():
    m, mean, std = _model()
    img, g = torch.rand(3, 3, 32, 32), torch.randn(3, 20)
    feats = m.features(pack(img, g))
    assert feats.shape == (3, m.tail_dim + 20) and m.feature_dim == m.tail_dim + 20
    assert torch.allclose(feats[:, : m.tail_dim], m.tail(m.trunk(img)))
    assert torch.allclose(feats[:, m.tail_dim :], (g - mean) / std, atol=1e-5)
    assert m(pack(img, g)).shape == (3, 6)


def test_missing_landmarks_fall_back_to_the_mean_geometry():
    m, mean, _ = _model()
    img = torch.rand(2, 3, 32, 32)
    nan = m(pack(img, torch.full((2, 20), float("nan"))))
    at_mean = m(pack(img, mean.expand(2, -1)))
    assert torch.allclose(nan, at_mean, atol=1e-5)


def test_cached_maps_give_the_same_logits_as_images():
    m, _, _ = _model()
    img, g = torch.rand(5, 3, 32, 32), torch.randn(5, 20)
    maps = pack(m.trunk(img).detach(), g)
    cached = CachedTrunkModel(model=m).eval()
    assert torch.allclose(cached(maps), m(pack(img, g)), atol=1e-5)
    assert torch.allclose(m.forward_from_trunk(maps), m(pack(img, g)), atol=1e-5)


def test_geometry_changes_the_prediction():
    m, _, _ = _model()
    img = torch.rand(1, 3, 32, 32).expand(8, -1, -1, -1)
    out = m(pack(img, torch.randn(8, 20) * 5))
    assert out.std(0).abs().sum() > 0  # same pixels, different landmarks: different logits


def test_compound_output_starts_as_the_mean_of_its_components():
    m = build_model("small_cnn", num_classes=7, image_size=32)
    basics = [taxonomy.label_of(n) for n in taxonomy.basic_names()]
    order = basics + [taxonomy.label_of("Happily surprised")]
    rows = component_rows(6, order)
    assert sorted(taxonomy.name_of(order[r]) for r in rows) == ["Happy", "Surprised"]
    assert init_from_components(m.head, [6], order) == [6]
    w, b = m.head.classifier.weight, m.head.classifier.bias
    assert torch.allclose(w[6], w[rows].mean(0)) and torch.allclose(b[6], b[rows].mean(0))
    assert component_rows(0, order) == []  # a basic class has no components


def test_sum_rule_scores_a_face_showing_both_components_above_either():
    m = build_model("small_cnn", num_classes=7, image_size=32)
    basics = [taxonomy.label_of(n) for n in taxonomy.basic_names()]
    order = basics + [taxonomy.label_of("Happily surprised")]
    init_from_components(m.head, [6], order, rule="sum")
    rows = component_rows(6, order)
    w, b = m.head.classifier.weight, m.head.classifier.bias
    assert torch.allclose(w[6], w[rows].sum(0)) and torch.allclose(b[6], b[rows].sum(0))
    with pytest.raises(ValueError, match="rule"):
        init_from_components(m.head, [6], order, rule="max")
