"""`compound-fer demo`: the protocol on the built-in synthetic faces, in minutes on 2 CPU cores: KD+PSMR
against Naive, the few-shot protocol in both modes (the paper's and the one that keeps the basic
classes), a Grad-CAM figure of a compound beside its two components, and where every output is."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from compound_fer.commands._common import add_run_arguments, run_from_args

NAME = "demo"
HELP = "run the protocol on built-in synthetic faces (no files needed; a few minutes on 2 CPU cores)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, default_config="demo", data=False)


#: The few-shot row keys the summary prints, and their names.
FEWSHOT_COLUMNS = {"harmonic_mean": "harmonic mean", "new_class_recall": "new-class recall",
                   "basic_accuracy": "basic accuracy"}


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def takeaways(rows: list[dict]) -> list[str]:
    """What the run shows, in a few lines: KD+PSMR against Naive, and each few-shot mode at its most shots
    (harmonic mean, new-class recall, basic accuracy when the rows have them)."""
    from compound_fer.evaluation.report import fewshot_summary, summarize

    lines = []
    summary = summarize(rows)
    for key in ("kdpsmr", "naive"):
        if key in summary:
            s = summary[key]
            lines.append(f"  continual {key:7s} Overall {_pct(s.get('overall_accuracy'))}, basic retention "
                         f"{_pct(s.get('final_basic_retention'))}, final {_pct(s.get('final_accuracy'))}")
    table = fewshot_summary(rows)
    for mode in dict.fromkeys(r.get("mode", "reference") for r in table):
        r = max((r for r in table if r.get("mode", "reference") == mode), key=lambda r: r["shots"])
        cells = [(name, r.get(k)) for k, name in FEWSHOT_COLUMNS.items() if k in r]
        lines.append(f"  few-shot {mode:9s} {r['shots']} shots: " + ", ".join(f"{k} {_pct(v)}" for k, v in cells))
    if table:
        fixes = sorted({str(s.get("bias_correction")) for s in (r.get("settings") or {} for r in rows)
                        if s.get("mode") == "kept" and s.get("bias_correction") not in (None, "none")})
        lines.append("  (reference: the paper's episode, shots only; kept: a KD+PSMR memory of basic faces keeps the "
                     "basic classes" + (f", with {' and '.join(fixes)}" if fixes else "")
                     + "; the harmonic mean needs both recall and basic accuracy)")
    return lines


def _outputs(out: Path, figure: list[Path]) -> list[str]:
    """Every file the demo wrote, by kind."""
    def listed(paths) -> str:
        return ", ".join(str(p) for p in sorted(paths)) or "(none)"

    return [f"  tables:  {out / 'results.md'}, {out / 'results.json'}, {out / 'results.csv'}",
            f"  figures: {listed(p for p in (out / 'figures').glob('*.png') if p not in figure)}",
            f"  Grad-CAM (compound beside its components): {listed(figure)}",
            f"  models:  {listed((out / 'models').glob('*.pt'))}",
            f"  config:  {out / 'config.yaml'}"]


def run(args: argparse.Namespace) -> int:
    rc = run_from_args(args)
    if rc:
        return rc
    from compound_fer.commands._common import resolve_config
    from compound_fer.config import load_config
    from compound_fer.errors import CompoundFERError
    from compound_fer.evaluation.report import load_rows
    from compound_fer.explain.components import compound_components_figure

    cfg = load_config(resolve_config(args.config))
    out = Path(args.out or Path("runs") / cfg.name)
    try:
        figure = compound_components_figure(out, seed=cfg.seeds[0] if args.seeds is None else
                                            int(args.seeds.split(",")[0]))
    except CompoundFERError as err:  # the results are written: say why the figure is missing, do not fail
        print(f"no compound Grad-CAM figure: {err}")
        figure = []
    print("What this run shows (synthetic faces, people never trained on):")
    print("\n".join(takeaways(load_rows(out)[1])))
    print("Outputs:")
    print("\n".join(_outputs(out, figure)))
    return 0
