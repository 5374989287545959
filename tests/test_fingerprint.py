"""The run fingerprint: what makes two runs the same, what refuses to mix them."""

import pytest

from compound_fer import fingerprint
from compound_fer.config import parse_config
from compound_fer.errors import ConfigError

BASE = {"name": "a", "data": {"source": "synthetic", "image_size": 32}, "basic": {"epochs": 1}, "threads": 1}


def fp(cfg: dict, data=None, test=None) -> dict:
    return fingerprint.make(parse_config(cfg), data_path=data, test_path=test)


def test_settings_that_only_select_rows_do_not_count():
    a = fp(BASE)
    b = fp({**BASE, "name": "b", "seeds": [1, 2], "threads": 2, "continual": {"methods": ["naive"], "orders": 5},
            "fewshot": {"enabled": False, "shots": [3], "repeats": 2}})
    assert a["config_sha256"] == b["config_sha256"] and fingerprint.differences(a, b) == []


def test_differences_name_the_settings_and_the_data(tmp_path):
    (tmp_path / "d1" / "happy").mkdir(parents=True)
    (tmp_path / "d1" / "happy" / "a.jpg").write_bytes(b"x" * 10)
    a = fp({**BASE, "data": {"source": "path", "path": str(tmp_path / "d1")}}, data=str(tmp_path / "d1"))
    b = fp({**BASE, "data": {"source": "path", "path": str(tmp_path / "d1"), "image_size": 48}},
           data=str(tmp_path / "d1"))
    assert [d.split(":")[0] for d in fingerprint.differences(a, b)] == ["data.image_size"]
    (tmp_path / "d1" / "happy" / "b.jpg").write_bytes(b"y")  # a file more: same folder, other data
    c = fp({**BASE, "data": {"source": "path", "path": str(tmp_path / "d1")}}, data=str(tmp_path / "d1"))
    (diff,) = fingerprint.differences(a, c)
    assert diff.startswith("data:") and "different files" in diff and "(1 files)" in diff and "(2 files)" in diff


def test_claim_refuses_mixing_and_overwrite_clears_only_run_files(tmp_path):
    out = tmp_path / "out"
    fingerprint.claim(out, fp(BASE), resume=False, overwrite=False)
    (out / "rows").mkdir()
    (out / "rows" / "r.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    fingerprint.claim(out, fp(BASE), resume=True, overwrite=False)  # same run: fine
    with pytest.raises(ConfigError, match="already holds a run"):
        fingerprint.claim(out, fp(BASE), resume=False, overwrite=False)
    with pytest.raises(ConfigError, match=r"(?s)another config or data.*basic.epochs: 1 in the folder, 2 now"):
        fingerprint.claim(out, fp({**BASE, "basic": {"epochs": 2}}), resume=True, overwrite=False)
    fingerprint.claim(out, fp({**BASE, "basic": {"epochs": 2}}), resume=False, overwrite=True)
    assert not (out / "rows").exists() and (out / "notes.txt").read_text() == "mine"
    assert fingerprint.read(out)["settings"]["basic.epochs"] == 2


def test_a_setting_added_by_newer_code_counts_as_its_default_in_an_older_folder():
    old, new = fp(BASE), fp(BASE)
    del old["settings"]["basic.epochs"], old["settings"]["model.dropout"]  # as if written before they existed
    new["settings"]["basic.epochs"] = 30  # the default: the old folder ran with it
    assert fingerprint.differences(old, new) == []
    new["settings"]["model.dropout"] = 0.5  # not the default: a real difference
    assert [d.split(":")[0] for d in fingerprint.differences(old, new)] == ["model.dropout"]


def test_a_basic_model_of_another_image_size_is_refused_even_without_a_fingerprint(tmp_path):
    """Scripts that share a basic model copy models/ alone (no fingerprint.json): a model trained at 32 px
    would load into a 48 px run and silently score other inputs (seen: validation 80.5% -> 72.7%)."""
    import shutil

    from test_runner import TINY

    from compound_fer.runner import run_protocol

    cfg = parse_config({**TINY, "continual": {**TINY["continual"], "methods": ["naive"]}, "fewshot": {"enabled": False},
                        "loggers": []})
    run_protocol(cfg, out_dir=tmp_path / "a", progress=False)
    shutil.copytree(tmp_path / "a" / "models", tmp_path / "b" / "models")
    bigger = cfg.with_overrides(data={"image_size": 48})
    with pytest.raises(ConfigError, match=r"basic_seed0\.pt was made with other settings \(image_size: 32 there, 48"):
        run_protocol(bigger, out_dir=tmp_path / "b", resume=True, progress=False)
