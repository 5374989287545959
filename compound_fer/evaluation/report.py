"""Results tables and figures from the runner's rows: JSON, CSV, Markdown; PNG + PDF plots.

Rows are :mod:`compound_fer.evaluation.rows` dataclasses (one per basic model, continual run or few-shot
run), read here by attribute; every function also takes their JSON dicts, so a report can be rebuilt from
``results.json`` or from the per-row files alone (`compound-fer report DIR`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from compound_fer.evaluation import figures
from compound_fer.evaluation.metrics import harmonic_mean, summarize_orders
from compound_fer.evaluation.paired import DEFAULT_REFERENCE, PAIRED_METRICS, mean_ci, paired_block
from compound_fer.evaluation.rows import BasicRow, ContinualRow, EpisodeRow, FewShotRow, Row, as_rows
from compound_fer.io import write_json, write_text

log = logging.getLogger(__name__)

#: Columns of the continual summary table, in order.
SUMMARY_COLUMNS = (
    ("overall_accuracy", "Overall acc."),
    ("overall_accuracy_without_step0", "Overall acc. (no step 0)"),
    ("final_accuracy", "Final acc."),
    ("final_new_accuracy", "New (mean over steps)"),
    ("final_old_accuracy", "Old (mean over steps)"),
    ("average_forgetting", "Forgetting"),
    ("backward_transfer", "BWT"),
    ("final_basic_retention", "Basic retention"),
    ("seconds", "Wall s / order"),
)

#: Display names of reference methods in the paired table's title.
REFERENCE_LABELS = {"kdpsmr": "KD+PSMR"}


def _mean(xs: Iterable[float]) -> float:
    vals = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(vals)) if vals else float("nan")


def _continual_groups(rows: Sequence[Row | dict]) -> dict[str, list[ContinualRow]]:
    """Continual rows by report group (method, with the mode when not strict), in row order."""
    groups: dict[str, list[ContinualRow]] = defaultdict(list)
    for r in as_rows(rows):
        if isinstance(r, ContinualRow):
            groups[r.group].append(r)
    return groups


def summarize(rows: Sequence[Row | dict]) -> dict[str, dict[str, Any]]:
    """Per (method, mode) summary over orders and seeds of the continual rows."""
    out = {}
    for key, rs in _continual_groups(rows).items():
        s = summarize_orders([r.to_dict() for r in rs])
        s["method"] = rs[0].method
        s["mode"] = rs[0].mode or "strict"
        s["runs"] = len(rs)
        s["seeds"] = sorted({r.seed for r in rs})
        s["final_new_accuracy"] = _mean(_mean(r.new_class_accuracy[1:]) for r in rs)
        s["final_old_accuracy"] = _mean(_mean(r.old_class_accuracy[1:]) for r in rs)
        s["seconds"] = _mean(r.seconds for r in rs)
        s["train_seconds_after_basic"] = _mean(r.train_seconds_after_basic for r in rs)
        per_order = [_mean(r.step_accuracy) for r in rs]
        s["best_order_overall"] = float(np.max(per_order))
        s["worst_order_overall"] = float(np.min(per_order))
        # mean and 95% Student t-interval over all seed x order runs of the group (evaluation/paired.py)
        s["ci95"] = {m: mean_ci([fn(r) for r in rs]) for m, fn in PAIRED_METRICS.items()}
        out[key] = s
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["overall_accuracy"]))


def fewshot_mode(row: FewShotRow) -> str:
    """The few-shot protocol a row ran: ``reference`` (the paper's; rows written before modes existed) or ``kept``."""
    return str((row.settings or {}).get("mode", "reference"))


def fewshot_summary(rows: Sequence[Row | dict]) -> list[dict]:
    """Few-shot table: per mode and shot count, the harmonic mean of the mean new-class recall (the
    reference's number) and the mean basic accuracy (the generalised few-shot score), balanced, 7-way and
    basic accuracy, and basic accuracy before the episode."""
    by_shots: dict[tuple[str, int], list[FewShotRow]] = defaultdict(list)
    for r in as_rows(rows):
        if isinstance(r, FewShotRow):
            by_shots[(fewshot_mode(r), int(r.shots))].append(r)
    table = []
    for mode, shots in sorted(by_shots, key=lambda k: (k[0] != "reference", k[0], k[1])):
        rs = by_shots[(mode, shots)]
        recall, basic = _mean(r.new_class_recall for r in rs), _mean(r.basic_accuracy for r in rs)
        table.append({
            "mode": mode,
            "shots": shots,
            "runs": len(rs),
            "harmonic_mean": harmonic_mean(recall, basic),
            "balanced_accuracy": _mean(r.balanced_accuracy for r in rs),
            "basic_accuracy_before": _mean(r.basic_accuracy_before for r in rs),
            "new_class_recall": recall,
            "seven_way_accuracy": _mean(r.seven_way_accuracy for r in rs),
            "basic_accuracy": _mean(r.basic_accuracy for r in rs),
            "perfect_new_class_share": _mean(float(r.new_class_recall == 1.0) for r in rs),
        })
    return table


def episodes_summary(rows: Sequence[Row | dict]) -> list[dict]:
    """N-way K-shot table: per learner and K, mean accuracy over episodes and its 95% CI (mean over seeds)."""
    by: dict[tuple[str, int, int], list[EpisodeRow]] = defaultdict(list)
    for r in as_rows(rows):
        if isinstance(r, EpisodeRow):
            by[(r.learner, r.ways, r.shots)].append(r)
    return [{"learner": learner, "ways": ways, "shots": shots, "seeds": len(rs), "episodes": rs[0].episodes,
             "queries_per_class_mean": _mean(r.queries_per_class_mean for r in rs),
             "accuracy_mean": _mean(r.accuracy_mean for r in rs), "accuracy_ci95": _mean(r.accuracy_ci95 for r in rs)}
            for (learner, ways, shots), rs in sorted(by.items(), key=lambda kv: (kv[0][2], kv[0][0]))]


def episodes_table(episodes: Sequence[dict]) -> str:
    """The Markdown table of :func:`episodes_summary` (empty without episodes)."""
    if not episodes:
        return ""
    out = ["### N-way K-shot episodes over compound classes (accuracy in %, mean +- 95% CI)\n",
           "| learner | N-way | K-shot | episodes | queries per class | accuracy |", "|---|---|---|---|---|---|"]
    out += [f"| {e['learner']} | {e['ways']} | {e['shots']} | {e['episodes']} | {e['queries_per_class_mean']:.1f} | "
            f"{100 * e['accuracy_mean']:.2f} +- {100 * e['accuracy_ci95']:.2f} |" for e in episodes]
    return "\n".join(out) + "\n\n"


def _fmt(x: Any, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.2f}" if pct else f"{x:.1f}"


def _with_ci(s: dict, key: str) -> str:
    """A summary cell: the mean in %, with ``+- half-width`` of its 95% t-interval when there is one."""
    cell = _fmt(s.get(key))
    half = ((s.get("ci95") or {}).get(key) or {}).get("half_width")
    return cell if half is None or cell == "n/a" else f"{cell} +- {100 * half:.2f}"


def _pp(x: Any) -> str:
    """A difference in accuracy points, signed."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:+.2f}"


def _interval(ci: Any) -> str:
    return "n/a" if not ci else f"[{_pp(ci[0])}, {_pp(ci[1])}]"


def _p(p: Any) -> str:
    return "n/a" if p is None else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")


def paired_table(paired: dict | None) -> str:
    """The Markdown table of :func:`compound_fer.evaluation.paired.paired_block` ("" without continual rows)."""
    if not paired or paired.get("reason") == "no continual rows":
        return ""
    ref = paired.get("reference", DEFAULT_REFERENCE)
    out = [f"### Paired against {REFERENCE_LABELS.get(ref, ref)} "
           f"(method - {ref}, accuracy points, on the same (seed, order) pairs)\n"]
    if not paired.get("available"):
        return "\n".join(out) + f"\nNot computed: {paired.get('reason')}.\n\n"
    out += ["| metric | method | pairs | mean diff | 95% CI (paired t) | 95% CI (bootstrap) | Wilcoxon p | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    names = dict(SUMMARY_COLUMNS)
    for metric, per in paired.get("metrics", {}).items():
        for method, c in per.items():
            skipped = f" ({c['skipped']} unpaired)" if c.get("skipped") else ""
            out.append(f"| {names.get(metric, metric)} | {method} | {c['n']}{skipped} | {_pp(c['mean_diff'])} | "
                       f"{_interval(c['ci'])} | {_interval(c.get('bootstrap_ci'))} | {_p(c['wilcoxon_p'])} | "
                       f"{c['verdict']} |")
    return "\n".join(out) + "\n\n"


def markdown_tables(summary: dict[str, dict], fewshot: list[dict], basic_rows: Sequence[BasicRow | dict],
                    paired: dict | None = None) -> str:
    """The Markdown tables of a run: basic models, continual summary (with the paired table when
    ``paired``, :func:`compound_fer.evaluation.paired.paired_block`, is given), few-shot."""
    out = io.StringIO()
    if basic_rows:
        out.write("### Basic model (experience 0)\n\n| seed | backbone | best epoch | val acc. | test acc. | s |\n"
                  "|---|---|---|---|---|---|\n")
        for r in as_rows(basic_rows):
            out.write(f"| {r.seed} | {r.backbone} | {r.best_epoch} | {_fmt(r.val_accuracy)} | "
                      f"{_fmt(r.test_accuracy)} | {r.seconds} |\n")
        out.write("\n")
    if summary:
        out.write("### Continual (accuracies in %, mean over orders and seeds; overall and final accuracies: "
                  "mean +- half-width of the 95% t-interval over the seed x order runs)\n\n")
        out.write("| method | runs | " + " | ".join(h for _, h in SUMMARY_COLUMNS) + " |\n")
        out.write("|---|---|" + "---|" * len(SUMMARY_COLUMNS) + "\n")
        for key, s in summary.items():
            cells = [_with_ci(s, k) if k in PAIRED_METRICS else _fmt(s.get(k), pct=(k != "seconds"))
                     for k, _ in SUMMARY_COLUMNS]
            out.write(f"| {key} | {s['runs']} | " + " | ".join(cells) + " |\n")
        out.write("\n")
        out.write(paired_table(paired))
    if fewshot:
        out.write("### Few-shot (accuracies in %, mean over compound classes)\n\n"
                  "| mode | shots | runs | harmonic mean (recall, basic) | new-class recall (reference's metric) | "
                  "basic accuracy | balanced accuracy | 7-way accuracy |"
                  " basic before | runs with 100% new-class recall |\n|---|---|---|---|---|---|---|---|---|---|\n")
        for r in fewshot:
            out.write(
                f"| {r.get('mode', 'reference')} | {r['shots']} | {r['runs']} | {_fmt(r.get('harmonic_mean'))} | "
                f"{_fmt(r['new_class_recall'])} | {_fmt(r['basic_accuracy'])} | {_fmt(r.get('balanced_accuracy'))} | "
                f"{_fmt(r['seven_way_accuracy'])} | {_fmt(r.get('basic_accuracy_before'))} | "
                f"{_fmt(r['perfect_new_class_share'])} |\n"
            )
        out.write("\n")
    return out.getvalue()


def _csv(rows: Sequence[dict]) -> str:
    """The scalar keys of every row (JSON dicts), one CSV line each."""
    scalar_rows = [{k: v for k, v in r.items() if isinstance(v, (int, float, str, bool)) or v is None} for r in rows]
    keys: list[str] = []
    for r in scalar_rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(scalar_rows)
    return buf.getvalue()


def plot_step_curves(rows: Sequence[Row | dict], out: Path) -> list[str]:
    """Per method: best, average and worst class order, and all methods' means (evaluation/figures.py)."""
    return figures.plot_step_curves(_continual_groups(rows), out)


def plot_matrices(rows: Sequence[Row | dict], out: Path) -> list[str]:
    """Mean accuracy matrix per method, and the final confusion matrix of its first order (evaluation/figures.py)."""
    return figures.plot_matrices(_continual_groups(rows), out)


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_")


def write_report(out_dir: str | Path, *, rows: Sequence[Row | dict], header: dict, config: Any = None,
                 figures: bool = True) -> dict:
    """Write results.json, results.csv, results.md and figures/ under ``out_dir``; returns the summary, the
    few-shot table and the paired block (each method against KD+PSMR on the same seed x order pairs)."""
    out_dir = Path(out_dir)
    rows = as_rows(rows)
    dicts = [r.to_dict() for r in rows]
    summary = summarize(rows)
    few = fewshot_summary(rows)
    episodes = episodes_summary(rows)
    basic_rows = [r for r in rows if isinstance(r, BasicRow)]
    paired = paired_block(rows)
    write_json(out_dir / "results.json", {**header, "summary": summary, "paired": paired, "fewshot": few,
                                          **({"episodes": episodes} if episodes else {}), "rows": dicts})
    write_text(out_dir / "results.csv", _csv(dicts))
    md = f"## {header.get('config', 'run')}\n\n`{header.get('command')}` (commit {header.get('commit')})\n\n"
    tables = markdown_tables(summary, few, basic_rows, paired) + episodes_table(episodes)
    write_text(out_dir / "results.md", md + tables)
    if figures and summary:
        plot_step_curves(rows, out_dir / "figures")
        plot_matrices(rows, out_dir / "figures")
    return {"summary": summary, "fewshot": few, "paired": paired}


def _row_key(r: dict) -> tuple:
    """What identifies a row: the same run written twice (results.json and rows/) counts once. A few-shot
    row's mode sits in its settings: the reference and kept episodes of one class and shot count are two rows."""
    mode = r.get("mode") or (r.get("settings") or {}).get("mode")
    return (mode,) + tuple(r.get(k) for k in ("kind", "seed", "method", "order_index", "compound", "shots", "repeat",
                                              "learner"))


def merge_rows(*row_lists: Sequence[dict]) -> list[dict]:
    """One row per key (see ``_row_key``), later lists winning: the rows of several calls on one folder."""
    merged: dict[tuple, dict] = {}
    for rows in row_lists:
        for r in rows:
            merged[_row_key(r)] = r
    return list(merged.values())


def _read_json(path: Path, what: str) -> Any:
    """A JSON file's value, or None (logged, naming the file) when it is empty, torn or not ``what``."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = "empty" if path.is_file() and path.stat().st_size == 0 else f"unreadable ({err})"
        log.warning("%s is %s; skipping it", path, reason)
        return None
    ok = isinstance(value, dict) and (what != "row" or ("kind" in value and "seed" in value))
    if what == "results" and ok and not isinstance(value.get("rows", []), list):
        ok = False
    if not ok:
        log.warning("%s is not a %s file; skipping it", path, what)
        return None
    return value


def load_rows(results_dir: str | Path) -> tuple[dict, list[dict]]:
    """Rows of a run: results.json merged with the per-row files (rows/*.json), so a folder that several
    processes filled (e.g. methods split over two ``--resume`` runs) or an unfinished run reports whole.
    Empty or torn files are named in a warning and skipped; the intact rows still report."""
    results_dir = Path(results_dir)
    main = results_dir / "results.json"
    header: dict = {"command": "(rebuilt from rows)", "config": results_dir.name}
    rows: list[dict] = []
    if main.is_file():
        loaded = _read_json(main, "results")
        if loaded is not None:
            header = loaded
            rows = [r for r in header.pop("rows", []) if isinstance(r, dict) and "kind" in r]
    on_disk = [r for p in sorted((results_dir / "rows").glob("*.json")) if (r := _read_json(p, "row")) is not None]
    rows = merge_rows(rows, on_disk)
    if not any(r.get("kind") == "basic" for r in rows):
        basic = [m for p in sorted((results_dir / "models").glob("basic_*.json"))
                 if (m := _read_json(p, "model metadata")) is not None]
        rows = [m | {"kind": "basic"} for m in basic] + rows
    return header, rows
