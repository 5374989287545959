"""Step checkpoints hold state, not data: tensors equal to the reference (basic) model and the benchmark's
data sets are stored by reference, and loading restores values, identities and flags exactly."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compound_fer.checkpoint import StepCheckpoint, benchmark_refs


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.BatchNorm1d(256), nn.Linear(256, 5))


def test_unchanged_weights_are_saved_by_reference_and_restored_exactly(tmp_path):
    basic = _net()
    model = copy.deepcopy(basic)
    teacher = copy.deepcopy(basic).requires_grad_(False)  # a frozen copy, as the distillation keeps
    for p in model[0].parameters():
        p.requires_grad_(False)  # a frozen trunk: its tensors equal the basic model's
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    loss = model(torch.randn(8, 64)).pow(2).mean()
    loss.backward()
    opt.step()
    state = {"model": model, "teacher": teacher, "opt": opt}
    full = StepCheckpoint(path=tmp_path / "full.ckpt")
    full.save(step=1, state=state)
    small = StepCheckpoint(path=tmp_path / "small.ckpt", reference=basic)
    small.save(step=1, state=state)
    assert small.last_bytes < 0.6 * full.last_bytes  # the teacher and the frozen layer are not written
    step, back = StepCheckpoint(path=tmp_path / "small.ckpt", reference=basic).load()
    assert step == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, back["model"].state_dict()[k]), k
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, back["teacher"].state_dict()[k]), k
    m, t = back["model"], back["teacher"]
    assert m[0].weight is not t[0].weight and m[0].weight is not basic[0].weight  # distinct objects stay distinct
    assert [p.requires_grad for p in m.parameters()] == [p.requires_grad for p in model.parameters()]
    assert not any(p.requires_grad for p in t.parameters())
    opt_params = [p for g in back["opt"].param_groups for p in g["params"]]
    assert all(any(p is q for q in m.parameters()) for p in opt_params)  # shared objects stay shared
    m[0].weight.data.add_(1.0)  # training the restored model never touches the reference
    assert not torch.equal(m[0].weight, basic[0].weight)


def test_data_sets_under_a_benchmark_are_saved_by_reference(tmp_path):
    from avalanche.benchmarks import nc_benchmark

    def bench(size: int):
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(40, 3, size, size, generator=g), torch.arange(4).repeat_interleave(10)
        return nc_benchmark(
            TensorDataset(x, y),
            TensorDataset(x.clone(), y.clone()),
            n_experiences=2,
            task_labels=False,
            shuffle=False,
            seed=0,
            fixed_class_order=[0, 1, 2, 3],
            per_exp_classes={0: 2, 1: 2},
        )

    sizes = []
    for size in (8, 64):  # 64x the pixels: the same checkpoint size
        b = bench(size)
        refs = benchmark_refs(b)
        assert sorted(refs) == ["test_data_0", "train_data_0"]
        memory = b.train_stream[1].dataset.subset([0, 3, 5])
        ck = StepCheckpoint(path=tmp_path / f"{size}.ckpt", external=refs)
        ck.save(step=0, state={"memory": memory})
        sizes.append(ck.last_bytes)
        _, back = StepCheckpoint(path=tmp_path / f"{size}.ckpt", external=refs).load()
        assert all(torch.equal(back["memory"][i][0], memory[i][0]) for i in range(3))
    assert sizes[0] == sizes[1]


def test_writing_a_checkpoint_prints_no_pickling_warning(tmp_path):
    """dill warns when it pickles a class by reference (an optimizer): harmless, silenced where it is written."""
    import warnings

    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        StepCheckpoint(path=tmp_path / "a.ckpt").save(step=0, state={"model": model, "optimizer": opt,
                                                                     "cls": torch.optim.Adam})
    assert not [w for w in caught if w.category.__name__ == "PicklingWarning"], [str(w.message) for w in caught]
