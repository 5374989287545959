import json

import pytest

from compound_fer.io import atomic_write, provenance, write_json


def test_write_json_is_atomic_and_leaves_no_temp(tmp_path):
    p = write_json(tmp_path / "a" / "r.json", {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    assert [q.name for q in p.parent.iterdir()] == ["r.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = write_json(tmp_path / "r.json", {"x": 1})

    def boom(f):
        f.write('{"x": 2, "half')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert json.loads(p.read_text()) == {"x": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["r.json"]


def test_provenance_has_what_results_need():
    h = provenance(command="compound-fer demo", seed=3)
    assert h["command"] == "compound-fer demo" and h["seed"] == 3
    assert {"commit", "machine", "utc"} <= set(h)
    assert h["machine"]["cpu_count"] >= 1


def test_atomic_files_are_as_readable_as_plainly_written_ones(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    p = write_json(tmp_path / "r.json", {"x": 1})  # mkstemp alone would leave it owner-only (0600)
    assert p.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
