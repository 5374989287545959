"""The config.yaml a run saves is exactly what ran: every CLI override is in it, and a rerun from it
gives the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compound_fer.cli import main
from compound_fer.config import load_config, parse_config
from compound_fer.errors import ConfigError
from compound_fer.runner import effective_config, resolve_plan, run_protocol

TIMING = {"seconds", "step_seconds", "train_seconds_after_basic", "trunk_cache_seconds"}
#: seconds on CPU: 8 faces a class, one epoch everywhere; the CLI overrides below change most of it
TINY = {
    "name": "tiny-saved",
    "data": {"source": "synthetic", "image_size": 32, "synthetic": {"n_subjects": 8, "per_subject": 1, "seed": 0}},
    "evaluation": {"mode": "reference", "folds": 4, "val_fraction": 0.2, "test_fraction": 0.3},
    "model": {"backbone": "small_cnn", "pretrained": False},
    "basic": {"epochs": 1, "batch_size": 32, "patience": 1},
    "continual": {"methods": ["kdpsmr", "replay"], "orders": 3, "epochs": 1, "augment_views": 0},
    "fewshot": {"enabled": True, "shots": [1], "compounds": ["Awed"], "epochs": 1},
    "seeds": [0, 1],
    "threads": 1,
    "loggers": [],
}


def _rows(out: Path) -> list[str]:
    rows = json.loads((out / "results.json").read_text())["rows"]
    return sorted(json.dumps({k: v for k, v in r.items() if k not in TIMING}, sort_keys=True) for r in rows)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("saved")
    cfg = base / "tiny.yaml"
    cfg.write_text(json.dumps(TINY))  # JSON is YAML
    out = base / "cli"
    rc = main(["run", "--config", str(cfg), "--out", str(out), "--methods", "naive", "--orders", "1",
               "--seeds", "3", "--mode", "strict", "--no-fewshot", "--no-progress", "--threads", "1"])
    assert rc == 0
    return base, out


def test_saved_config_holds_every_cli_override(cli_run):
    _, out = cli_run
    saved = load_config(out / "config.yaml")
    assert saved.continual.methods == ("naive",)
    assert saved.continual.orders == 1
    assert saved.seeds == (3,)
    assert saved.evaluation.mode == "strict"
    assert saved.fewshot.enabled is False
    assert saved.threads == 1


def test_rerun_from_the_saved_config_gives_the_same_rows(cli_run):
    base, out = cli_run
    again = base / "again"
    run_protocol(load_config(out / "config.yaml"), out_dir=again, progress=False)
    assert _rows(again) == _rows(out)
    assert (again / "config.yaml").read_text() == (out / "config.yaml").read_text()


def test_effective_config_applies_paths_and_refuses_unknown_methods(tmp_path):
    cfg = effective_config(parse_config(TINY), data_path=str(tmp_path), test_path=str(tmp_path / "t"), methods=[],
                           fewshot=False)
    assert (cfg.data.source, cfg.data.path, cfg.data.test_path) == ("path", str(tmp_path), str(tmp_path / "t"))
    assert cfg.continual.methods == () and cfg.fewshot.enabled is False
    with pytest.raises(ConfigError, match="unknown method"):
        effective_config(parse_config(TINY), methods=["nope"])


def test_unknown_method_option_names_method_key_and_valid_keys():
    bad = {**TINY, "continual": {**TINY["continual"], "method_options": {"lwf": {"alpah": 2.0}}}}
    with pytest.raises(ConfigError, match=r"method_options\.lwf: unknown option\(s\) alpah; valid keys: alpha, "
                                          r"temperature"):
        resolve_plan(parse_config(bad, source="bad.yaml"))
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        resolve_plan(parse_config({**TINY, "continual": {"method_options": {"nope": {}}}}))
    with pytest.raises(ConfigError, match=r"continual\.methods: unknown method 'nope'"):
        resolve_plan(parse_config({**TINY, "continual": {"methods": ["nope"]}}))
    ok = {**TINY, "continual": {**TINY["continual"], "method_options": {"kdpsmr+purified": {"purify_weight": 0.1}}}}
    plan = resolve_plan(parse_config(ok))
    assert plan.method("kdpsmr+purified").options.purify_weight == 0.1
    # the runner's distillation settings reach the methods that declare them; the others get none
    assert plan.method("kdpsmr").options.temperature == 3.0 and type(plan.method("replay").options).model_fields == {}


def test_mistyped_method_option_is_refused_in_the_config_file_and_on_the_command_line(tmp_path, capsys):
    bad = {**TINY, "continual": {**TINY["continual"], "method_options": {"kdpsmr": {"gamma0": "lots"}}}}
    with pytest.raises(ConfigError, match=r"continual\.method_options\.kdpsmr\.gamma0: .*number.*'lots'"):
        resolve_plan(parse_config(bad))
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "kdpsmr.gamma0" in err and "Traceback" not in err
    path.write_text(yaml.safe_dump({**TINY, "continual": {**TINY["continual"],
                                                           "method_options": {"lwf": {"alpah": 1}}}}))
    assert main(["run", "--config", str(path), "--methods", "lwf", "--out", str(tmp_path / "out2")]) == 2
    assert "method_options.lwf: unknown option(s) alpah" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_docs_list_every_method_and_option():
    from compound_fer.training.registry import available

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| `")}
    for name, entry in available().items():
        assert f"`{name}`" in rows, f"docs/configuration.md: no row for method {name}"
        for key in entry.options:
            assert f"`{key}`" in rows[f"`{name}`"], f"docs/configuration.md: {name} lacks option {key}"
