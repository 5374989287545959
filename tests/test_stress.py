"""A long synthetic stream (100 procedural classes): replay memory never exceeds its budget and process
memory stays flat (benchmarks/stress.py). Step time is a benchmark figure (benchmarks/reliability.py), never a
test assertion."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("stress", Path(__file__).resolve().parents[1] / "benchmarks/stress.py")
stress = sys.modules["stress"] = importlib.util.module_from_spec(_SPEC)  # dataclasses look their module up
_SPEC.loader.exec_module(stress)
StreamSpec, run_stream = stress.StreamSpec, stress.run_stream

SPEC = StreamSpec(n_classes=100, first=10, train_per_class=20, test_per_class=2, memory=150, seed=0)


@pytest.mark.parametrize("method", ["kdpsmr", "replay"])
def test_replay_memory_stays_within_budget_over_100_classes(method):
    stats = run_stream(method, SPEC)
    assert [s.classes_seen for s in stats] == list(range(SPEC.first + 1, SPEC.n_classes + 1))
    assert all(s.memory_items <= SPEC.memory for s in stats)  # the budget holds at every step, 100 classes
    assert all(s.memory_items >= s.classes_seen for s in stats)  # and it is used: every class seen has images
    # nothing else grows with the stream: process memory over the last 80 steps moves by less than 64 MiB
    assert stats[-1].rss_mib - stats[9].rss_mib < 64
