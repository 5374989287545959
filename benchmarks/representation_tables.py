"""Print the Markdown tables of docs/benchmarks.md's "Representation levers" section from the results files
(no number is typed by hand): the validation ablation, and the test results of cfee_cpu / cfee_best /
cfee_best_landmarks, few-shot by mode and few-shot continual.

    python benchmarks/representation_tables.py                           # print them
    python benchmarks/representation_tables.py --write docs/benchmarks.md  # refresh them in the page
"""

from __future__ import annotations

import json
from pathlib import Path

R = Path("benchmarks/results")
METHODS = ("kdpsmr", "psmr", "ncm", "gdumb", "icarl", "replay", "joint")
CONFIGS = ("cfee_cpu", "cfee_best_112px", "cfee_best_landmarks_112px", "cfee_best", "cfee_best_landmarks")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _method(v: dict) -> tuple[str, dict]:
    """The variant's scored method: kdpsmr, else the one it ran (e.g. ncm)."""
    scored = {n: m for n, m in v.items() if isinstance(m, dict) and "overall" in m}
    name = "kdpsmr" if "kdpsmr" in scored else next(iter(scored), "")
    return name, scored.get(name, {})


def ablation() -> str:
    """One block per tuning file: the variants of a file share one basic model, so compare within a block."""
    out = ["| run | variant (validation subjects, 1 order) | method | basic model | Overall | final 21-way | "
           "basic retention |", "|---|---|---|---|---|---|---|"]
    for path in sorted(R.glob("representation_tuning*.json")):
        tag = path.stem.replace("representation_tuning", "").strip("_") or "main"
        rows = _load(path)["variants"]
        for name, v in sorted(rows.items(), key=lambda kv: -_method(kv[1])[1].get("overall", 0)):
            method, k = _method(v)
            basic = v.get("geometry_basic_val_accuracy") or v.get("basic_val_accuracy")
            out.append(f"| {tag} | {name} | {method} | {_pct(basic)} | {_pct(k.get('overall'))} | "
                       f"{_pct(k.get('final'))} | {_pct(k.get('retention'))} |")
    return "\n".join(out)


def fewshot_ablation() -> str:
    """Kept few-shot episodes on validation subjects, one ingredient on or off per row."""
    data = _load(R / "fewshot_tuning.json")
    out = ["| variant (validation subjects) | shots | 7-way | new-class recall | basic after | basic before |",
           "|---|---|---|---|---|---|"]
    for name, v in (data or {}).get("variants", {}).items():
        for key, m in sorted((k, m) for k, m in v.items() if k.startswith("fewshot ")):
            shots = key.split()[2]
            out.append(f"| {name} | {shots} | {_pct(m['seven_way'])} | {_pct(m['new_class_recall'])} | "
                       f"{_pct(m['basic_after'])} | {_pct(m['basic_before'])} |")
    return "\n".join(out)


def test_results() -> str:
    out = ["| config | method | Overall (± sd over orders) | final 21-way | basic retention | KD+PSMR ahead by |",
           "|---|---|---|---|---|---|"]
    for cfg in CONFIGS:
        data = _load(R / cfg / "results.json")
        if not data:
            continue
        s = data["summary"]
        for m in METHODS:
            if m not in s:
                continue
            lead = "" if m == "kdpsmr" or "kdpsmr" not in s else \
                f"{100 * (s['kdpsmr']['overall_accuracy'] - s[m]['overall_accuracy']):+.1f}"
            out.append(f"| {cfg} | {m} | {_pct(s[m]['overall_accuracy'])} ± "
                       f"{_pct(s[m].get('overall_accuracy_std_over_orders'))} | {_pct(s[m]['final_accuracy'])} | "
                       f"{_pct(s[m].get('final_basic_retention'))} | {lead} |")
    return "\n".join(out)


def fewshot() -> str:
    out = ["| config | mode | shots | episodes | 7-way | new-class recall | basic after | basic before |",
           "|---|---|---|---|---|---|---|---|"]
    for cfg in CONFIGS:
        data = _load(R / cfg / "results.json")
        for r in (data or {}).get("fewshot", []):
            out.append(
                f"| {cfg} | {r.get('mode', 'reference')} | {r['shots']} | {r['runs']} | "
                f"{_pct(r['seven_way_accuracy'])} | {_pct(r['new_class_recall'])} | {_pct(r['basic_accuracy'])} | "
                f"{_pct(r.get('basic_accuracy_before'))} |"
            )
    return "\n".join(out)


def fewshot_continual() -> str:
    out = ["| config | images per compound | Overall | final 21-way | basic retention |", "|---|---|---|---|---|"]
    for cfg in ("cfee_best_112px", "cfee_best"):
        for d in sorted((R / f"{cfg}_fewshot_continual").glob("shots*"), key=lambda p: int(p.name[5:])):
            s = (_load(d / "results.json") or {}).get("summary", {}).get("kdpsmr")
            if s:
                out.append(f"| {cfg} | {d.name[5:]} | {_pct(s['overall_accuracy'])} | {_pct(s['final_accuracy'])} | "
                           f"{_pct(s.get('final_basic_retention'))} |")
    return "\n".join(out)


TABLES = {"ablation": ablation, "test": test_results, "fewshot": fewshot, "fewshot_continual": fewshot_continual,
          "fewshot_ablation": fewshot_ablation}


def fill(text: str) -> str:
    """``text`` with the table between each ``<!-- tables:NAME -->`` and ``<!-- /tables:NAME -->`` regenerated."""
    for name, make in TABLES.items():
        start, end = f"<!-- tables:{name} -->", f"<!-- /tables:{name} -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = head + start + "\n" + make() + "\n" + end + rest.split(end, 1)[1]
    return text


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(f"usage: representation_tables.py [--write PAGE.md]\n\n{__doc__}")
        raise SystemExit(0)
    if len(sys.argv) > 2 and sys.argv[1] == "--write":  # regenerate the tables inside a Markdown page
        page = Path(sys.argv[2])
        page.write_text(fill(page.read_text()))
    else:
        for name, make in TABLES.items():
            print(f"### {name}\n\n{make()}\n")
