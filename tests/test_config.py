from pathlib import Path

import pytest

from compound_fer.config import ProtocolConfig, dump_config, load_config, parse_config
from compound_fer.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "compound_fer" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_packaged_configs_load_and_round_trip(path, tmp_path):
    cfg = load_config(path)
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(again) == cfg


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"continual\.epoch: unknown key"):
        parse_config({"continual": {"epoch": 3}})


def test_wrong_type_and_range_are_named():
    with pytest.raises(ConfigError) as err:
        parse_config({"basic": {"epochs": "many"}, "continual": {"memory_fraction": 2.0}})
    msg = str(err.value)
    assert "basic.epochs" in msg and "continual.memory_fraction" in msg


def test_semantic_checks():
    with pytest.raises(ConfigError, match="data.path is required"):
        parse_config({"data": {"source": "path"}})
    with pytest.raises(ConfigError, match="not a compound"):
        parse_config({"fewshot": {"compounds": ["Happy"]}})
    with pytest.raises(ConfigError, match="fold"):
        parse_config({"evaluation": {"folds": 3, "fold": 5}})
    assert parse_config({"fewshot": {"compounds": ["sadly angry"]}}).fewshot.compounds == ("Sadly angry",)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("basic: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_are_validated():
    cfg = ProtocolConfig()
    assert cfg.with_overrides(continual={"orders": 5}).continual.orders == 5
    with pytest.raises(ConfigError):
        cfg.with_overrides(continual={"orders": 0})
