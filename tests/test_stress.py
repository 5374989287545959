"""A long synthetic stream (100 procedural classes): replay memory never exceeds its budget and process
memory stays flat. Step time is a benchmark figure (benchmarks/reliability.py), never a test assertion."""

from __future__ import annotations

import pytest

from compound_fer.stress import StreamSpec, run_stream

SPEC = StreamSpec(n_classes=100, first=10, train_per_class=20, test_per_class=2, memory=150, seed=0)


@pytest.mark.parametrize("method", ["kdpsmr", "replay"])
def test_replay_memory_stays_within_budget_over_100_classes(method):
    stats = run_stream(method, SPEC)
    assert [s.classes_seen for s in stats] == list(range(SPEC.first + 1, SPEC.n_classes + 1))
    assert all(s.memory_items <= SPEC.memory for s in stats)  # the budget holds at every step, 100 classes
    assert all(s.memory_items >= s.classes_seen for s in stats)  # and it is used: every class seen has images
    # nothing else grows with the stream: process memory over the last 80 steps moves by less than 64 MiB
    assert stats[-1].rss_mib - stats[9].rss_mib < 64
