"""Redraw the docs' number figures from committed results (no training, no face pixels).

``python benchmarks/docs_figures.py`` writes into ``docs/figures/``:

- ``cfee_step_accuracy_methods.png`` and ``cfee_step_accuracy_kdpsmr.png``: the step curves of the
  ``cfee_cpu`` benchmark, from the rows under ``benchmarks/results/cfee_cpu/``;
- ``gradcam_cfee_regions.png``: region attention per class, reference set-up, Grad-CAM, from
  ``benchmarks/results/gradcam_cfee.json`` (``runs['reference/gradcam']``).

The synthetic Grad-CAM figures come from ``compound-fer gradcam --synthetic`` (it trains a model) and are
not redrawn here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from compound_fer.evaluation.report import load_rows, plot_step_curves
from compound_fer.explain.figures import region_bars

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _, rows = load_rows(args.results / "cfee_cpu")
        plot_step_curves(rows, tmp)
        cams = json.loads((args.results / "gradcam_cfee.json").read_text(encoding="utf-8"))
        region_bars(cams["runs"]["reference/gradcam"]["region_attention_class"], tmp / "regions")
        for src, dst in (("step_accuracy_methods.png", "cfee_step_accuracy_methods.png"),
                         ("step_accuracy_kdpsmr.png", "cfee_step_accuracy_kdpsmr.png"),
                         ("regions.png", "gradcam_cfee_regions.png")):
            shutil.copyfile(tmp / src, args.out / dst)
            print(f"wrote {args.out / dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
