"""Every registered method runs through the protocol runner (not only through its builder)."""

import pytest
from test_runner import TINY as BASE

from compound_fer.config import parse_config
from compound_fer.runner import run_protocol
from compound_fer.training.registry import available

#: methods that predict differently from the basic model at step 0 by design: iCaRL and NCM classify by
#: nearest class mean; PathNet trains its own paths and head on the basic classes
OWN_STEP0 = {"icarl", "ncm", "pathnet"}

TINY = {
    **BASE,
    "name": "tiny_all",
    "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 8, "per_subject": 1, "seed": 0}},
    "evaluation": {"mode": "strict", "val_fraction": 0.25, "test_fraction": 0.25},
    "basic": {"epochs": 1, "lr": 0.002, "batch_size": 32, "patience": 1},
    "continual": {
        "orders": 1,
        "epochs": 1,
        "lr": 0.001,
        "augment_views": 1,
        "method_options": {"omni": {"dm_iterations": 2}, "pathnet": {"population": 4, "tournament_steps": 1}},
    },
    "fewshot": {"enabled": False},
    "loggers": [],
}


@pytest.fixture(scope="module")
def all_rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    return run_protocol(parse_config(TINY), out_dir=out, methods=list(available()), progress=False)


@pytest.mark.parametrize("method", sorted(available()))
def test_method_completes_the_protocol(all_rows, method):
    row = next(r for r in all_rows if r.get("method") == method)
    assert len(row["step_accuracy"]) == 16
    assert all(0.0 <= a <= 1.0 for a in row["step_accuracy"])
    if method not in OWN_STEP0:  # step 0 is the shared basic model
        naive = next(r for r in all_rows if r.get("method") == "naive")
        assert row["step_accuracy"][0] == naive["step_accuracy"][0]
