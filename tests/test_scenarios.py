"""Behaviour of the basic-to-compound Avalanche benchmarks, including a run of Avalanche's own strategies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compound_fer import taxonomy
from compound_fer.data.augment import make_augment
from compound_fer.data.faceset import FaceSet
from compound_fer.data.splits import class_orders
from compound_fer.errors import ConfigError
from compound_fer.inputs import Inputs
from compound_fer.scenarios import basic_to_compound, fewshot_benchmark

BASIC = taxonomy.basic_names()


def random_faces(*, n_subjects=3, per=2, seed=0, size=16, neutral=False, first_subject=0) -> FaceSet:
    """Random uint8 faces: every subject shows every class ``per`` times."""
    g = torch.Generator().manual_seed(seed)
    classes = range(0 if neutral else 1, len(taxonomy.CATEGORIES))
    labels = [c for _ in range(n_subjects) for c in classes for _ in range(per)]
    subjects = [first_subject + s for s in range(n_subjects) for _ in classes for _ in range(per)]
    n = len(labels)
    return FaceSet(images=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                   labels=torch.tensor(labels), subjects=torch.tensor(subjects))


@pytest.fixture(scope="module")
def faces():
    return random_faces(n_subjects=4, per=2, seed=0), random_faces(n_subjects=2, per=1, seed=1, first_subject=100)


def _ys(dataset) -> list[int]:
    return [int(t) for t in dataset.targets]


def test_experience_0_is_basic_then_one_compound_per_step(faces):
    train, test = faces
    order = class_orders(1, seed=42)[0]
    cb = basic_to_compound(train=train, test=test, compound_order=order, seed=0)
    assert cb.n_experiences == 16 and cb.n_classes == 21
    assert cb.names[:6] == BASIC and cb.names[6:] == order
    assert cb.experience_classes[0] == tuple(range(6))
    for j, exp in enumerate(cb.train_stream):
        ys = set(_ys(exp.dataset))
        assert ys == set(cb.experience_classes[j])
        if j:
            assert cb.experience_classes[j] == (5 + j,)
            assert cb.names[5 + j] == order[j - 1]
        # the rows recorded for the experience are exactly the FaceSet rows of its classes
        glob = {cb.class_order[m] for m in cb.experience_classes[j]}
        assert set(train.labels[cb.train_index[j]].tolist()) == glob
        assert len(cb.train_index[j]) == len(exp.dataset)
    for j, exp in enumerate(cb.test_stream):
        assert set(_ys(exp.dataset)) == set(cb.experience_classes[j])
        assert len(cb.test_index[j]) == len(exp.dataset)
    # model labels contiguous 0..K-1 in order of appearance
    seen = [c for exp in cb.experience_classes for c in exp]
    assert seen == list(range(21))
    assert cb.seen_classes(2) == tuple(range(8))
    assert cb.benchmark.classes_order == list(range(21))  # iCaRL reads this
    assert cb.to_global_labels(cb.to_model_labels(train.labels)).tolist() == train.labels.tolist()


def test_neutral_joins_experience_0_and_groups_follow_classes_per_exp(faces):
    train = random_faces(n_subjects=2, per=1, neutral=True)
    test = random_faces(n_subjects=1, per=1, neutral=True, seed=3, first_subject=50)
    cb = basic_to_compound(train=train, test=test, include_neutral=True,
                           compound_order=["Awed", "Hatred", "Appalled", "Sadly fearful"], classes_per_exp=[3, 1])
    assert cb.names[:7] == ("Neutral",) + BASIC
    assert cb.experience_classes == (tuple(range(7)), (7, 8, 9), (10,))
    assert cb.names[7:] == ("Awed", "Hatred", "Appalled", "Sadly fearful")
    assert set(_ys(cb.train_stream[1].dataset)) == {7, 8, 9}
    cb2 = basic_to_compound(train=train, test=test, compound_order=["Awed", "Hatred", "Appalled"], classes_per_exp=2)
    assert cb2.experience_classes == (tuple(range(6)), (6, 7), (8,))
    with pytest.raises(ConfigError, match="sum to the 3"):
        basic_to_compound(train=train, test=test, compound_order=["Awed", "Hatred", "Appalled"], classes_per_exp=[1, 1])


def test_new_class_cap_limits_only_new_classes(faces):
    train, test = faces  # 8 images per class
    cb = basic_to_compound(train=train, test=test, new_class_cap=3, seed=5)
    assert len(cb.train_stream[0].dataset) == 6 * 8  # basic classes keep everything
    for j in range(1, cb.n_experiences):
        assert len(cb.train_stream[j].dataset) == 3
        assert len(cb.test_stream[j].dataset) == 2  # the test stream is never capped
    again = basic_to_compound(train=train, test=test, new_class_cap=3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(cb.train_index, again.train_index))
    other = basic_to_compound(train=train, test=test, new_class_cap=3, seed=6)
    assert not all(np.array_equal(a, b) for a, b in zip(cb.train_index, other.train_index))


def test_shots_are_recorded_and_reproducible(faces):
    train, test = faces
    cb = basic_to_compound(train=train, test=test, compound_order=["Awed", "Hatred"], shots=2, seed=9)
    rec = cb.settings["shots"]
    assert set(rec) == {"Awed", "Hatred"} and all(len(v) == 2 for v in rec.values())
    assert train.labels[rec["Awed"]].eq(taxonomy.label_of("Awed")).all()
    assert cb.train_index[1].tolist() == rec["Awed"] and cb.train_index[2].tolist() == rec["Hatred"]
    assert basic_to_compound(train=train, test=test, compound_order=["Awed", "Hatred"], shots=2,
                             seed=9).settings["shots"] == rec
    with pytest.raises(ConfigError, match="has 8 images"):
        basic_to_compound(train=train, test=test, compound_order=["Awed"], shots=9)
    with pytest.raises(ConfigError, match="not both"):
        basic_to_compound(train=train, test=test, shots=1, new_class_cap=3)


def test_fewshot_episode_is_7_way_with_k_shots_and_full_test(faces):
    train, test = faces
    cb = fewshot_benchmark(train=train, test=test, compound="sadly fearful", shots=1, seed=0)
    assert cb.names == BASIC + ("Sadly fearful",)
    assert [len(e.dataset) for e in cb.train_stream] == [48, 1]
    test_classes = set().union(*(set(_ys(e.dataset)) for e in cb.test_stream))
    assert test_classes == set(range(7))
    assert sum(len(e.dataset) for e in cb.test_stream) == 7 * 2


def test_precomputed_inputs_replace_images_row_for_row(faces):
    train, test = faces
    feats = torch.arange(len(train), dtype=torch.float32)[:, None].repeat(1, 5)  # row i -> value i
    tfeats = torch.zeros(len(test), 5)
    cb = basic_to_compound(train=train, test=test, compound_order=["Awed"], new_class_cap=2,
                           inputs=Inputs(train=feats, test=tfeats))
    for j, exp in enumerate(cb.train_stream):
        rows = sorted(int(exp.dataset[i][0][0]) for i in range(len(exp.dataset)))
        assert rows == cb.train_index[j].tolist()
    with pytest.raises(ConfigError, match="one row per FaceSet row"):
        basic_to_compound(train=train, test=test, inputs=Inputs(train=feats[:-1], test=tfeats))


def test_missing_class_is_a_clear_error(faces):
    train, test = faces
    with pytest.raises(ConfigError, match="test set has no images of Awed"):
        basic_to_compound(train=train, test=test.where(labels=[1, 2, 3, 4, 5, 6]), compound_order=["Awed"])


def test_reference_augmentation_works_on_tensor_items(faces):
    train, test = faces
    cb = basic_to_compound(train=train, test=test, compound_order=["Awed"], train_transform=make_augment())
    x, y, t = cb.train_stream[0].dataset[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and t == 0


def _strategies(n_classes: int, in_features: int):
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.models import IncrementalClassifier
    from avalanche.training import EWC, ICaRL, LwF, Naive, Replay
    from avalanche.training.plugins import EvaluationPlugin

    def model():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, 16), torch.nn.ReLU(),
                                   IncrementalClassifier(16, 2))

    def ev():
        return EvaluationPlugin(accuracy_metrics(stream=True), loggers=[])

    common = dict(criterion=torch.nn.CrossEntropyLoss(), train_mb_size=16, train_epochs=1, eval_mb_size=64,
                  device="cpu")

    def opt(m):
        return torch.optim.SGD(m.parameters(), lr=0.01)

    extra = {
        "Naive": (Naive, {}),
        "LwF": (LwF, {"alpha": 1.0, "temperature": 2.0}),
        "Replay": (Replay, {"mem_size": 20}),
        "EWC": (EWC, {"ewc_lambda": 1.0}),
    }
    for name, (cls, kwargs) in extra.items():
        m = model()
        yield name, cls(model=m, optimizer=opt(m), evaluator=ev(), **kwargs, **common)
    fe = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, 16), torch.nn.ReLU())
    clf = torch.nn.Linear(16, n_classes)
    yield "ICaRL", ICaRL(feature_extractor=fe, classifier=clf, optimizer=torch.optim.SGD(
        list(fe.parameters()) + list(clf.parameters()), lr=0.01), memory_size=20, buffer_transform=None,
        fixed_memory=True, evaluator=ev(), **{k: v for k, v in common.items() if k != "criterion"})


@pytest.mark.filterwarnings("ignore:No loggers specified")
def test_avalanche_strategies_run_over_the_benchmark(faces):
    """Naive, LwF (needs task labels), Replay, ICaRL (reads the class order) and EWC complete."""
    train, test = faces
    cb = basic_to_compound(train=train, test=test, compound_order=["Awed", "Hatred"], new_class_cap=4,
                           train_transform=make_augment())
    for exp in cb.train_stream:
        assert hasattr(exp.dataset, "targets_task_labels") and exp.task_label == 0
    ran = []
    for name, strategy in _strategies(cb.n_classes, 3 * 16 * 16):
        for exp in cb.train_stream:
            strategy.train(exp)
        res = strategy.eval(cb.test_stream)
        acc = [v for k, v in res.items() if k.startswith("Top1_Acc_Stream")]
        assert acc and 0.0 <= acc[0] <= 1.0, name
        ran.append(name)
    assert ran == ["Naive", "LwF", "Replay", "EWC", "ICaRL"]


def test_on_synthetic_faces_if_available():
    synthetic = pytest.importorskip("compound_fer.data.synthetic")
    names = list(BASIC) + ["Happily surprised", "Sadly angry"]
    faces = synthetic.generate(categories=names, n_subjects=4, per_subject=1, image_size=32, seed=0)
    train = faces.where(subjects=sorted(set(faces.subjects.tolist()))[:3])
    test = faces.where(subjects=sorted(set(faces.subjects.tolist()))[3:])
    cb = basic_to_compound(train=train, test=test, seed=0)
    assert cb.names == tuple(names)
    assert [len(e.dataset) for e in cb.train_stream] == [18, 3, 3]
