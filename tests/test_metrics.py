"""Every metric against a value computed by hand, and the plugin against evaluate_predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compound_fer.evaluation import metrics as M

Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 0, 2]  # correct: 0, 2, 3, 5


def test_accuracy_and_step_accuracy():
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    # classes {0, 1} seen: samples 0..3, correct 0, 2, 3
    assert M.step_accuracy(Y_TRUE, Y_PRED, [0, 1]) == pytest.approx(3 / 4)
    # predicting an unseen class is an error: sample 4 (class 2) predicted 0 is wrong either way
    assert M.step_accuracy(Y_TRUE, Y_PRED, [2]) == pytest.approx(1 / 2)
    assert math.isnan(M.step_accuracy(Y_TRUE, Y_PRED, [9]))
    assert M.accuracy(torch.tensor([1, 2]), np.array([1, 1])) == 0.5


def test_new_old_and_per_class_recall():
    new, old = M.new_old_accuracy(Y_TRUE, Y_PRED, new_classes=[2], old_classes=[0, 1])
    assert (new, old) == (pytest.approx(0.5), pytest.approx(0.75))
    assert M.per_class_recall(Y_TRUE, Y_PRED) == {0: 0.5, 1: 1.0, 2: 0.5}
    r = M.per_class_recall(Y_TRUE, Y_PRED, classes=[1, 5])
    assert r[1] == 1.0 and math.isnan(r[5])


def test_confusion_matrix_with_out_of_set_column():
    cm = M.confusion_matrix(Y_TRUE, Y_PRED, [0, 1, 2])
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0]]
    # Classes {0, 1} only: the class-2 rows are dropped; a prediction of 2 would go to the last column.
    cm2 = M.confusion_matrix([0, 1, 1], [2, 1, 0], [0, 1])
    assert cm2.tolist() == [[0, 0, 1], [1, 1, 0]]


def test_overall_accuracy_with_and_without_step0():
    acc = [[1.0, 0.5, 0.0], [0.5, 0.5, 0.5]]
    assert M.overall_accuracy(acc) == pytest.approx(3.0 / 6)
    assert M.overall_accuracy(acc, include_step0=False) == pytest.approx(1.5 / 4)
    assert M.overall_accuracy([0.8, 0.6]) == pytest.approx(0.7)


def test_basic_retention():
    assert M.basic_retention([0.8, 0.6, 0.4]).tolist() == pytest.approx([1.0, 0.75, 0.5])


def test_forgetting_and_bwt_hand_computed():
    nan = float("nan")
    r = [[0.9, nan, nan], [0.6, 0.8, nan], [0.5, 0.7, 0.9]]
    # forgetting: j=0: max(.9, .6) - .5 = .4; j=1: .8 - .7 = .1 -> .25
    assert M.average_forgetting(r) == pytest.approx(0.25)
    # BWT: ((.5 - .9) + (.7 - .8)) / 2 = -.25
    assert M.backward_transfer(r) == pytest.approx(-0.25)
    # They differ when an old task first improves: forgetting uses the best, BWT the just-learned accuracy.
    r2 = [[0.5, nan], [0.8, 0.9], [0.6, 0.7]]
    r2 = [row + [nan] for row in r2]
    assert M.average_forgetting(r2) == pytest.approx(((0.8 - 0.6) + (0.9 - 0.7)) / 2)
    assert M.backward_transfer(r2) == pytest.approx(((0.6 - 0.5) + (0.7 - 0.9)) / 2)
    assert math.isnan(M.average_forgetting([[1.0]]))


def test_accuracy_matrix_and_record():
    exp_classes = [[0, 1], [2]]
    t0, p0 = [0, 0, 1, 1], [0, 0, 1, 0]  # after step 0: only the seen classes evaluated
    t1, p1 = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    r = M.accuracy_matrix([t0, t1], [p0, p1], exp_classes)
    assert r[0, 0] == pytest.approx(0.75) and math.isnan(r[0, 1])
    assert r[1].tolist() == pytest.approx([0.75, 0.5])

    rec = M.ContinualRecord()
    rec.add_step(t0, p0, new_classes=[0, 1])
    rec.add_step(t1, p1, new_classes=[2])
    d = rec.to_dict()
    assert d["step_accuracy"] == pytest.approx([0.75, 4 / 6])
    assert d["overall_accuracy"] == pytest.approx((0.75 + 4 / 6) / 2)
    assert d["overall_accuracy_without_step0"] == pytest.approx(4 / 6)
    assert d["new_class_accuracy"] == pytest.approx([0.75, 0.5])
    assert math.isnan(d["old_class_accuracy"][0]) and d["old_class_accuracy"][1] == pytest.approx(0.75)
    assert d["basic_accuracy"] == pytest.approx([0.75, 0.75])
    assert d["basic_retention"] == pytest.approx([1.0, 1.0])
    assert d["average_forgetting"] == pytest.approx(0.0)
    assert d["backward_transfer"] == pytest.approx(0.0)
    assert d["final_per_class_recall"] == {"0": 0.5, "1": 1.0, "2": 0.5}
    assert d["final_confusion_matrix"][2] == [1, 0, 1, 0]

    s = M.summarize_orders([rec, rec])
    assert s["orders"] == 2 and s["overall_accuracy"] == pytest.approx(d["overall_accuracy"])
    with pytest.raises(ValueError, match="every"):
        M.ContinualRecord().set_step(1, t0, p0, new_classes=[0])


def test_plugin_matches_evaluate_predictions():
    """StepPredictionsPlugin's rows equal metrics computed from evaluate_predictions on the same model."""
    from avalanche.benchmarks import nc_benchmark
    from avalanche.models import IncrementalClassifier

    from compound_fer.evaluation.step_plugin import StepPredictionsPlugin
    from compound_fer.training.registry import make_strategy

    def blobs(n, seed):
        centers = torch.randn(6, 8, generator=torch.Generator().manual_seed(123)) * 3
        g = torch.Generator().manual_seed(seed)
        x = torch.cat([centers[c] + torch.randn(n, 8, generator=g) for c in range(6)])
        y = torch.arange(6).repeat_interleave(n)
        ds = torch.utils.data.TensorDataset(x, y)
        ds.targets = y.tolist()
        return ds

    bench = nc_benchmark(blobs(15, 0), blobs(8, 1), n_experiences=3, task_labels=False, seed=0,
                         fixed_class_order=list(range(6)), class_ids_from_zero_from_first_exp=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), IncrementalClassifier(16, 2))
    plugin = StepPredictionsPlugin()
    strategy = make_strategy("naive", model=model, plugins=[plugin], train_epochs=2, train_mb_size=8, lr=0.02)
    manual = M.ContinualRecord()
    for i, exp in enumerate(bench.train_stream):
        strategy.train(exp)
        strategy.eval(bench.test_stream)  # the whole test stream, future classes included
        t, p = M.evaluate_predictions(strategy.model, bench.test_stream, batch_size=32)
        assert len(t) == 48
        manual.add_step(t, p, new_classes=exp.classes_in_this_experience)
    assert plugin.record.step_accuracies() == pytest.approx(manual.step_accuracies())
    np.testing.assert_allclose(plugin.record.matrix(), manual.matrix())
    # Full-stream evaluation gives the upper triangle too: future classes are never predicted correctly.
    assert plugin.record.matrix()[0, 2] == 0.0
    assert plugin.last_row().shape == (3,)
    # evaluate_predictions on a slice and on a tensor pair agree with the stream version.
    t2, p2 = M.evaluate_predictions(strategy.model, bench.test_stream[:1])
    assert len(t2) == 16
    x = torch.cat([e.dataset[i][0][None] for e in bench.test_stream for i in range(len(e.dataset))])
    y = torch.tensor([int(e.dataset[i][1]) for e in bench.test_stream for i in range(len(e.dataset))])
    t3, p3 = M.evaluate_predictions(strategy.model, (x, y))
    assert (t3 == t).all() and (p3 == p).all()
