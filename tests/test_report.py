"""Reports rebuild from whatever a run folder holds: results.json, per-row files, or both."""

import json

from compound_fer.evaluation.report import load_rows


def _row(method: str, order: int) -> dict:
    return {"kind": "continual", "seed": 0, "mode": "strict", "method": method, "order_index": order,
            "step_accuracy": [0.5, 0.4]}


def test_rows_of_two_processes_merge_without_duplicates(tmp_path):
    # process A finished first and wrote results.json with its rows; process B (--resume) added its own rows
    basic = {"kind": "basic", "seed": 0, "val_accuracy": 0.7}
    (tmp_path / "results.json").write_text(json.dumps({"command": "A", "rows": [basic, _row("naive", 0)]}))
    (tmp_path / "rows").mkdir()
    for r in (_row("naive", 0), _row("replay", 0), _row("replay", 1)):
        (tmp_path / "rows" / f"{r['method']}_{r['order_index']}.json").write_text(json.dumps(r))
    header, rows = load_rows(tmp_path)
    assert header["command"] == "A"
    keys = sorted((r["kind"], r.get("method"), r.get("order_index")) for r in rows)
    assert keys == [("basic", None, None), ("continual", "naive", 0), ("continual", "replay", 0),
                    ("continual", "replay", 1)]


def test_unfinished_run_takes_basic_rows_from_basic_model_metadata_only(tmp_path):
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "a.json").write_text(json.dumps(_row("naive", 0)))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "basic_seed0.json").write_text(json.dumps({"seed": 0, "val_accuracy": 0.7}))
    (tmp_path / "models" / "kdpsmr_seed0.json").write_text(json.dumps({"seed": 0, "method": "kdpsmr"}))
    _, rows = load_rows(tmp_path)
    assert [r["kind"] for r in rows] == ["basic", "continual"]
