"""`compound-fer demo` shows what the package is for: KD+PSMR against Naive, the few-shot protocol in both
modes with the harmonic mean, a Grad-CAM figure of a compound beside its two components, and the path of
every output. The packaged demo config, shrunk to seconds (only sizes change)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from compound_fer import cli
from compound_fer.commands._common import resolve_config

SMALL = {
    "data": {"image_size": 32, "synthetic": {"n_subjects": 8, "per_subject": 1, "seed": 0}},
    "basic": {"epochs": 1, "average_last": 1},
    "continual": {"orders": 1, "epochs": 1},
    "fewshot": {"shots": [1, 2], "compounds": ["Happily surprised"], "epochs": 1},
    "threads": 1,
    "loggers": [],
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def test_demo_prints_both_fewshot_modes_a_components_figure_and_every_output(tmp_path, capsys):
    shipped = yaml.safe_load(resolve_config("demo").read_text())
    assert shipped["fewshot"]["mode"] == "both" and shipped["continual"]["methods"] == ["naive", "kdpsmr"]
    cfg = tmp_path / "demo_small.yaml"
    cfg.write_text(yaml.safe_dump(_merge(shipped, SMALL)))
    out = tmp_path / "demo"
    assert cli.main(["demo", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^\| reference \| 2 \|", text, re.M) and re.search(r"^\| kept \| 2 \|", text, re.M)
    shows = text[text.index("What this run shows"):text.index("Outputs:")]
    for line in ("continual kdpsmr", "continual naive", "few-shot reference 2 shots", "few-shot kept"):
        assert line in shows, shows
    few = [x for x in shows.splitlines() if x.strip().startswith("few-shot")]
    assert len(few) == 2 and all(k in x for x in few for k in ("harmonic mean", "new-class recall", "basic accuracy"))
    figure = out / "figures" / "gradcam_compound_components.png"
    grad_line = next(x for x in text.splitlines() if x.strip().startswith("Grad-CAM (compound beside"))
    assert figure.is_file() and str(figure) in grad_line
    listed = re.findall(r"(/\S+?\.(?:png|pdf|pt|json|md|csv|yaml))", text[text.index("Outputs:"):])
    assert len(listed) > 8 and all(Path(p).is_file() for p in listed), listed
    assert any(p.endswith("_kept.pt") for p in listed)  # the kept mode's few-shot model, saved for Grad-CAM
