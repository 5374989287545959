"""Thread defaults on a shared machine: as many torch threads as there are free cores, and OpenMP workers
that sleep rather than spin (set on import, before torch loads OpenMP)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from compound_fer.threads import auto_threads, busy_cores, configure, usable_cores


@pytest.mark.parametrize(("cores", "busy", "want"), [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 2.0, 1), (2, 9.0, 1),
                                                      (16, 3.2, 13), (1, 0.0, 1)])
def test_auto_threads_leave_the_busy_cores_to_their_owners(cores, busy, want):
    assert auto_threads(cores=cores, busy=busy) == want


def test_configure_applies_auto_and_explicit_counts():
    before = torch.get_num_threads()
    try:
        assert configure(1) == 1 and torch.get_num_threads() == 1
        n = configure("auto")
        assert 1 <= n <= usable_cores() and torch.get_num_threads() == n
        assert configure(0) >= 1  # 0 (the config default) means auto
    finally:
        torch.set_num_threads(before)
    assert 0.0 <= busy_cores(window=0.05) <= (os.cpu_count() or 1) + 0.01


@pytest.mark.parametrize(("env", "want"), [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
                                           ({"COMPOUND_FER_OMP_WAIT_POLICY": "default"}, "unset")])
def test_import_sets_a_passive_openmp_wait_policy_unless_told_otherwise(env, want):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "COMPOUND_FER_OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", "import os, compound_fer; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"],
                         env={**base, **env}, capture_output=True, text=True, check=True).stdout.strip()
    assert out == want
