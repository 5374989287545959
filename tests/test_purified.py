"""PurifiedLearning really removes subject identity from the features while keeping the expression."""

from __future__ import annotations

import pytest
import torch
from torch import nn

avalanche = pytest.importorskip("avalanche")

from avalanche.benchmarks import nc_benchmark  # noqa: E402
from avalanche.benchmarks.utils.classification_dataset import (  # noqa: E402
    _make_taskaware_tensor_classification_dataset as tensor_dataset,
)
from avalanche.models import IncrementalClassifier  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402

from compound_fer.errors import DataError  # noqa: E402
from compound_fer.training.purified import PurifiedLearning, build_purified, with_subjects  # noqa: E402
from compound_fer.training.registry import StrategyArgs  # noqa: E402

N_CLASSES, N_SUBJECTS, DIM = 4, 24, 32


class TinyNet(nn.Module):
    def __init__(self, dim: int = DIM, feat: int = 16, classes: int = N_CLASSES) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, feat))
        self.head = IncrementalClassifier(feat, classes)
        self.feature_dim = feat

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def blobs(subjects: range, per: int, seed: int):
    """Expression = a weak class direction; identity = a strong per-subject offset (the nuisance)."""
    g = torch.Generator().manual_seed(0)
    expr = torch.randn(N_CLASSES, DIM, generator=g)
    ident = 3.0 * torch.randn(N_SUBJECTS, DIM, generator=g)
    g = torch.Generator().manual_seed(seed)
    xs, ys, ss = [], [], []
    for s in subjects:
        for c in range(N_CLASSES):
            xs.append(expr[c] + ident[s] + 0.7 * torch.randn(per, DIM, generator=g))
            ys += [c] * per
            ss += [s] * per
    return torch.cat(xs), torch.tensor(ys), torch.tensor(ss)


def train(weight: float | None, seed: int = 0):
    x, y, s = blobs(range(16), 6, seed=1)
    xt, yt, _ = blobs(range(16, N_SUBJECTS), 6, seed=2)
    train_ds = with_subjects(tensor_dataset(x, y), s)
    bench = nc_benchmark(train_ds, tensor_dataset(xt, yt), n_experiences=1, task_labels=False, seed=0)
    torch.manual_seed(seed)  # after nc_benchmark, which reseeds the global generator
    model = TinyNet()
    args = StrategyArgs(lr=3e-3, train_epochs=25, train_mb_size=32, num_classes_total=N_CLASSES,
                        options={"purify_weight": weight or 0.0})
    strategy = build_purified(model=model, args=args, evaluator=EvaluationPlugin(loggers=[]))
    strategy.train(bench.train_stream[0])
    return model, (x, y, s), (xt, yt)


def probe_accuracy(feats: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """A fresh linear probe (softmax regression on standardised features), trained on half, tested on half."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(feats), generator=g)
    a, b = perm[: len(perm) // 2], perm[len(perm) // 2:]
    f = (feats - feats[a].mean(0)) / feats[a].std(0).clamp_min(1e-6)
    lin = nn.Linear(f.shape[1], int(labels.max()) + 1)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(lin(f[a]), labels[a]).backward()
        opt.step()
    return float((lin(f[b]).argmax(1) == labels[b]).float().mean())


def measure(model, train, test):
    (x, _, s), (xt, yt) = train, test
    model.eval()
    with torch.no_grad():
        feats = model.features(x)
        expr_acc = float((model(xt).argmax(1) == yt).float().mean())
    return probe_accuracy(feats, s), expr_acc


def test_purification_removes_identity_and_keeps_expression():
    """Means over 5 seeds: one seed's expression accuracy on 192 test faces moves by +-0.03 (one standard error)."""
    base = torch.tensor([measure(*train(None, seed)) for seed in range(5)]).mean(0)
    pure = torch.tensor([measure(*train(1.0, seed)) for seed in range(5)]).mean(0)
    (base_id, base_expr), (pure_id, pure_expr) = base.tolist(), pure.tolist()
    print(
        f"identity probe {base_id:.3f} -> {pure_id:.3f}; expression (unseen subjects) {base_expr:.3f} -> "
        f"{pure_expr:.3f}"
    )
    assert base_id > 0.6, "the stand-in data must carry identity strongly"
    assert pure_id < base_id - 0.5
    assert pure_expr >= base_expr - 0.03


def test_missing_subjects_is_a_clear_error():
    x, y, _ = blobs(range(2), 2, seed=0)
    bench = nc_benchmark(tensor_dataset(x, y), tensor_dataset(x, y), n_experiences=1, task_labels=False, seed=0)
    strategy = build_purified(
        model=TinyNet(), args=StrategyArgs(train_epochs=1), evaluator=EvaluationPlugin(loggers=[])
    )
    with pytest.raises(DataError, match="with_subjects"):
        strategy.train(bench.train_stream[0])


def test_eval_batches_keep_task_labels_and_train_batches_lose_subjects():
    plugin = PurifiedLearning()

    class S:
        mbatch = [torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([7, 9])]

    plugin.before_training_iteration(S)
    assert len(S.mbatch) == 3 and S.mbatch[-1].tolist() == [0, 0]
    assert plugin._subjects.tolist() == [7, 9]


def test_subjects_reach_a_basic_to_compound_benchmark_in_order():
    from compound_fer import taxonomy
    from compound_fer.data.synthetic import generate
    from compound_fer.scenarios import basic_to_compound
    from compound_fer.training.purified import benchmark_subjects

    cats = list(taxonomy.basic_names()) + ["Happily surprised", "Sadly angry"]
    tr = generate(categories=cats, n_subjects=3, per_subject=1, image_size=32, seed=0, masks=False)
    te = generate(categories=cats, n_subjects=1, per_subject=1, image_size=32, seed=0, subject_offset=9, masks=False)
    cb = basic_to_compound(train=tr, test=te)
    ids = benchmark_subjects(cb, tr)
    plugin = PurifiedLearning(subjects=ids)
    for j, exp in enumerate(cb.train_stream):
        class S:
            experience = exp

        plugin.before_train_dataset_adaptation(S)
        data = S.experience.dataset
        rows = torch.as_tensor(cb.train_index[j])
        rows = rows[torch.as_tensor(cb.to_model_labels(tr.labels[rows]).numpy().argsort(kind="stable"))]
        assert torch.equal(torch.stack([data[i][0] for i in range(len(data))]), tr.float_images()[rows])
        assert list(data._data_attributes["subjects"]) == tr.subjects[rows].tolist()
