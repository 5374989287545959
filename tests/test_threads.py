"""Thread defaults on a shared machine: the usable cores (affinity mask), and OpenMP workers that sleep
rather than spin (set on import, before torch loads OpenMP)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from compound_fer.threads import auto_threads, configure, usable_cores


def test_more_threads_than_cores_are_clamped_with_a_warning(caplog):
    before = torch.get_num_threads()
    try:
        with caplog.at_level("WARNING", logger="compound_fer.threads"):
            assert configure(9999) == usable_cores() == torch.get_num_threads()
        assert f"threads 9999: more than the {usable_cores()} usable core(s) of this machine; using" in caplog.text
        caplog.clear()
        with caplog.at_level("WARNING", logger="compound_fer.threads"):
            assert configure(1) == 1
        assert not caplog.text
    finally:
        torch.set_num_threads(before)


def test_auto_threads_are_the_usable_cores():
    assert auto_threads() == usable_cores() == len(os.sched_getaffinity(0))


def test_configure_applies_auto_and_explicit_counts():
    before = torch.get_num_threads()
    try:
        assert configure(1) == 1 and torch.get_num_threads() == 1
        n = configure("auto")
        assert 1 <= n <= usable_cores() and torch.get_num_threads() == n
        assert configure(0) >= 1  # 0 (the config default) means auto
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("env", "want"), [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
                                           ({"COMPOUND_FER_OMP_WAIT_POLICY": "default"}, "unset")])
def test_import_sets_a_passive_openmp_wait_policy_unless_told_otherwise(env, want):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "COMPOUND_FER_OMP_WAIT_POLICY")}
    out = subprocess.run(
        [sys.executable, "-c", "import os, compound_fer; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == want
