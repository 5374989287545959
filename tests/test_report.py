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


def test_reference_and_kept_episodes_of_one_class_are_two_rows(tmp_path):
    # a resumed run merges results.json with rows/: the modes live in settings and must not collide
    (tmp_path / "rows").mkdir()
    for mode in ("reference", "kept"):
        row = {"kind": "fewshot", "seed": 0, "repeat": 0, "compound": "Awed", "shots": 1,
               "new_class_recall": 1.0, "seven_way_accuracy": 0.2, "settings": {"mode": mode}}
        (tmp_path / "rows" / f"fewshot_{mode}.json").write_text(json.dumps(row))
        (tmp_path / "results.json").write_text(json.dumps({"command": "A", "rows": [row]}))
    _, rows = load_rows(tmp_path)
    assert sorted(r["settings"]["mode"] for r in rows) == ["kept", "reference"]


# ------------------------------------------------------------------ torn and empty files
def _fewshot(compound: str, shots: int = 1) -> dict:
    return {"kind": "fewshot", "seed": 0, "repeat": 0, "compound": compound, "shots": shots,
            "new_class_recall": 0.5, "seven_way_accuracy": 0.6, "basic_accuracy": 0.7}


def _folder_with_damage(tmp_path):
    (tmp_path / "rows").mkdir()
    for c in ("Awed", "Hatred", "Appalled"):
        (tmp_path / "rows" / f"fewshot_seed0_{c.lower()}_1shot_r0.json").write_text(json.dumps(_fewshot(c)))
    (tmp_path / "rows" / "fewshot_seed0_sadly_angry_1shot_r0.json").write_text("")  # empty (disk full)
    (tmp_path / "rows" / "fewshot_seed0_hatred_3shot_r0.json").write_text('{"kind": "fewshot", "se')  # torn
    (tmp_path / "rows" / "odd.json").write_text("[1, 2]")  # JSON, but not a row
    (tmp_path / "results.json").write_text('{"command": "A", "rows": [{"kind": "basic"')  # torn
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "basic_seed0.json").write_text(json.dumps({"seed": 0, "val_accuracy": 0.7}))
    return tmp_path


def test_torn_and_empty_json_files_are_named_and_skipped(tmp_path, caplog):
    import logging

    d = _folder_with_damage(tmp_path)
    with caplog.at_level(logging.WARNING):
        header, rows = load_rows(d)
    kinds = sorted((r["kind"], r.get("compound")) for r in rows)
    assert kinds == [("basic", None), ("fewshot", "Appalled"), ("fewshot", "Awed"), ("fewshot", "Hatred")]
    for name in ("results.json", "fewshot_seed0_sadly_angry_1shot_r0.json", "fewshot_seed0_hatred_3shot_r0.json",
                 "odd.json"):
        assert name in caplog.text, name


def test_report_command_on_a_damaged_folder_reports_the_intact_rows(tmp_path, capsys, caplog):
    from compound_fer import cli

    d = _folder_with_damage(tmp_path)
    before = (d / "rows" / "fewshot_seed0_sadly_angry_1shot_r0.json").read_bytes()
    assert cli.main(["report", str(d), "--no-figures"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "results.json" in caplog.text and "skipping" in caplog.text
    assert "Few-shot" in (d / "results.md").read_text() and "| 1 | 3 |" in (d / "results.md").read_text()
    assert (d / "rows" / "fewshot_seed0_sadly_angry_1shot_r0.json").read_bytes() == before  # evidence kept
    data = json.loads((d / "results.json").read_text())  # rewritten whole from the intact rows
    assert len(data["rows"]) == 4


def test_report_command_on_a_folder_with_nothing_intact(tmp_path, capsys):
    from compound_fer import cli

    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "a.json").write_text("")
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(tmp_path) in err and "no results" in err


# ------------------------------------------------------------------ results.md keeps every table on disk
TINY_YAML = """name: tiny
data: {source: synthetic, image_size: 32, synthetic: {n_subjects: 12, per_subject: 1, seed: 0}}
basic: {epochs: 1}
continual: {methods: [naive], orders: 1, epochs: 1, augment_views: 0}
fewshot: {enabled: true, shots: [1], compounds: [Awed], epochs: 1}
threads: 1
loggers: [csv]
"""


def test_results_md_keeps_the_tables_of_earlier_invocations(tmp_path, capsys):
    """`run --no-fewshot`, then the `fewshot` verb, then `run --resume --no-fewshot`: both tables stay."""
    from compound_fer import cli

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    out = tmp_path / "out"
    common = ["--config", str(cfg), "--out", str(out), "--no-progress"]
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # step checkpoints are written: no dill noise
        warnings.simplefilter("always")
        assert cli.main(["run", *common, "--no-fewshot"]) == 0
    assert not [w for w in caught if "Pickl" in type(w.message).__name__ or "Pickl" in str(w.message)]
    assert "### Continual" in (out / "results.md").read_text()
    assert cli.main(["fewshot", *common, "--resume"]) == 0
    md = (out / "results.md").read_text()
    assert "### Continual" in md and "### Few-shot" in md
    assert cli.main(["run", *common, "--resume", "--no-fewshot"]) == 0
    md = (out / "results.md").read_text()
    assert "### Continual" in md and "### Few-shot" in md
    kinds = sorted(r["kind"] for r in json.loads((out / "results.json").read_text())["rows"])
    assert kinds == ["basic", "continual", "fewshot"]
    capsys.readouterr()
