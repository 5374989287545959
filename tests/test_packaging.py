"""The packaging config ships every package and the packaged YAML configs, with nothing setuptools would
warn about (a folder Python can import that the package list leaves out)."""

from __future__ import annotations

import configparser
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_importable_folder_is_a_listed_package_and_the_configs_ship():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["options"]["packages"].strip() == "find_namespace:"
    find = cfg["options.packages.find"]
    listed = set(find_namespace_packages(str(ROOT), include=find["include"].split(", "),
                                         exclude=find["exclude"].split()))
    folders = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "compound_fer").rglob("*")
               if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py")) or p.name == "configs"}
    folders.add("compound_fer")
    assert folders <= listed and not any("__pycache__" in p for p in listed)
    assert cfg["options.package_data"]["compound_fer.configs"].strip() == "*.yaml"
    assert sorted(x.name for x in (ROOT / "compound_fer" / "configs").glob("*.yaml"))
