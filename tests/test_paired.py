"""Seed x order statistics: the t-interval of a mean, paired comparisons against KD+PSMR, and the report."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from compound_fer.evaluation.metrics import mean_confidence_interval, t_quantile
from compound_fer.evaluation.paired import mean_ci, paired_block, paired_comparison, row_value
from compound_fer.evaluation.report import summarize, write_report


def test_t_interval_of_a_mean_by_hand():
    # [1, 2, 3]: mean 2, sample sd 1, t(0.975, 2 d.f.) = 4.3027 -> half-width 4.3027 / sqrt(3) = 2.4841
    assert t_quantile(3) == pytest.approx(4.302653, abs=1e-6)
    m = mean_ci([1.0, 2.0, 3.0])
    assert m["n"] == 3 and m["mean"] == 2.0
    assert m["half_width"] == pytest.approx(4.302653 / math.sqrt(3), abs=1e-6)
    assert m["ci"] == pytest.approx([2 - 2.484138, 2 + 2.484138], abs=1e-6)
    # n = 9 (3 seeds x 3 orders): t = 2.306, wider than the normal 1.96
    assert t_quantile(9) == pytest.approx(2.306004, abs=1e-6)


def test_normal_interval_stays_the_default():
    v = [0.0, 1.0, 0.0, 1.0]
    assert mean_confidence_interval(v)[1] == pytest.approx(1.96 * np.std(v, ddof=1) / 2)
    assert mean_confidence_interval(v, kind="t")[1] == pytest.approx(t_quantile(4) * np.std(v, ddof=1) / 2)
    assert mean_confidence_interval([0.7], kind="t") == (0.7, 0.0)
    with pytest.raises(ValueError, match="kind"):
        mean_confidence_interval(v, kind="z")


def test_one_value_has_no_interval():
    m = mean_ci([0.7])
    assert m["mean"] == 0.7 and m["ci"] is None and m["half_width"] is None and "one value" in m["reason"]
    assert mean_ci([])["mean"] is None and mean_ci([float("nan")])["n"] == 0
    c = paired_comparison({(0, 0): 0.8}, {(0, 0): 0.7})
    assert c["n"] == 1 and c["mean_diff"] == pytest.approx(0.1)
    assert c["ci"] is None and c["wilcoxon_p"] is None and c["verdict"] == "too few pairs"
    assert c["wilcoxon_reason"] == "fewer than 2 pairs"


def test_paired_difference_t_interval_and_verdict_by_hand():
    ref = {(0, 0): 0.5, (0, 1): 0.5, (1, 0): 0.5}
    method = {(0, 0): 0.51, (0, 1): 0.52, (1, 0): 0.53}  # differences 0.01, 0.02, 0.03
    c = paired_comparison(method, ref)
    assert c["n"] == 3 and c["skipped"] == 0 and c["mean_diff"] == pytest.approx(0.02)
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert c["ci"] == pytest.approx([0.02 - half, 0.02 + half], abs=1e-6)
    assert c["verdict"] == "not distinguishable"  # the interval [-0.0048, 0.0448] holds 0
    lo, hi = c["bootstrap_ci"]
    assert 0.01 - 1e-9 <= lo <= 0.02 <= hi <= 0.03 + 1e-9  # within the range of the differences
    assert paired_comparison(method, ref)["bootstrap_ci"] == c["bootstrap_ci"]  # fixed seed


def test_wilcoxon_matches_scipy_and_the_smallest_exact_p_of_nine_pairs():
    d = [0.01 * (k + 1) for k in range(9)]  # nine positive, distinct differences
    ref = {(s, o): 0.5 for s in range(3) for o in range(3)}
    method = {k: 0.5 + d[3 * k[0] + k[1]] for k in ref}
    c = paired_comparison(method, ref)
    assert c["n"] == 9 and c["wilcoxon_p"] == pytest.approx(2 / 512)
    assert c["verdict"] == "ahead" and c["ci"][0] > 0
    assert paired_comparison(ref, method)["verdict"] == "behind"
    # a mixed case: the same p as scipy on the differences
    mixed = [0.03, -0.01, 0.02, 0.05, -0.02, 0.04, 0.01, 0.06, -0.005]
    method = {k: 0.5 + mixed[3 * k[0] + k[1]] for k in ref}
    assert paired_comparison(method, ref)["wilcoxon_p"] == pytest.approx(
        stats.wilcoxon(np.array(mixed)).pvalue)


def test_all_zero_differences_have_no_wilcoxon_p():
    ref = {(0, 0): 0.5, (0, 1): 0.6}
    c = paired_comparison(dict(ref), ref)
    assert c["mean_diff"] == 0.0 and c["wilcoxon_p"] is None and c["wilcoxon_reason"] == "all differences are zero"


def test_pairs_by_seed_and_order_not_by_position_and_counts_missing_pairs():
    ref = {(0, 0): 0.50, (0, 1): 0.60, (1, 0): 0.70}
    method = {(1, 0): 0.75, (0, 1): 0.62, (0, 0): 0.51, (1, 1): 0.9}  # other order; (1, 1) has no partner
    c = paired_comparison(method, ref)
    assert c["n"] == 3 and c["skipped"] == 1
    assert c["pairs"] == [[0, 0], [0, 1], [1, 0]]
    assert c["mean_diff"] == pytest.approx((0.01 + 0.02 + 0.05) / 3)
    # a None value (a metric the row lacks) is skipped the same way
    assert paired_comparison({**method, (0, 0): None}, ref)["n"] == 2


# ------------------------------------------------------------------ rows and the report
SEEDS, ORDERS = (0, 1, 2), (0, 1, 2)


def _row(method: str, seed: int, order: int, last: float) -> dict:
    return {"kind": "continual", "seed": seed, "mode": "strict", "method": method, "order_index": order,
            "order": ["A", "B"], "step_accuracy": [0.8, last], "new_class_accuracy": [0.8, 0.5],
            "old_class_accuracy": [0.8, 0.7], "basic_retention": [1.0, 0.9], "average_forgetting": 0.1,
            "backward_transfer": -0.1, "seconds": 1.0}


def _rows(reverse: bool = False) -> list[dict]:
    ref = [_row("kdpsmr", s, o, 0.70 + 0.01 * s + 0.005 * o) for s in SEEDS for o in ORDERS]
    naive = [_row("naive", s, o, 0.70 + 0.01 * s + 0.005 * o - 0.05 - 0.001 * (3 * s + o))
             for s in SEEDS for o in ORDERS]
    return ref + (naive[::-1] if reverse else naive)


def test_summary_carries_the_t_interval_over_seed_x_order_runs():
    s = summarize(_rows())["kdpsmr"]
    finals = [row_value(r, "final_accuracy") for r in _rows()[:9]]
    ci = s["ci95"]["final_accuracy"]
    assert ci["n"] == 9 and ci["mean"] == pytest.approx(s["final_accuracy"])
    assert ci["half_width"] == pytest.approx(t_quantile(9) * np.std(finals, ddof=1) / 3)
    assert s["ci95"]["overall_accuracy"]["mean"] == pytest.approx(s["overall_accuracy"])


def test_write_report_has_the_paired_block_and_table(tmp_path):
    write_report(tmp_path, rows=_rows(reverse=True), header={"command": "test"}, figures=False)
    data = json.loads((tmp_path / "results.json").read_text())
    p = data["paired"]
    assert p["available"] and p["reference"] == "kdpsmr"
    final = p["metrics"]["final_accuracy"]["naive"]
    diffs = [-0.05 - 0.001 * k for k in range(9)]
    assert final["n"] == 9 and final["mean_diff"] == pytest.approx(np.mean(diffs))
    assert final["seeds"] == [0, 1, 2] and final["orders"] == [0, 1, 2]
    assert final["wilcoxon_p"] == pytest.approx(2 / 512) and final["verdict"] == "behind"
    assert p["metrics"]["overall_accuracy"]["naive"]["mean_diff"] == pytest.approx(np.mean(diffs) / 2)
    assert "kdpsmr" not in p["metrics"]["overall_accuracy"]
    md = (tmp_path / "results.md").read_text()
    assert "### Paired against KD+PSMR" in md
    assert ("| metric | method | pairs | mean diff | 95% CI (paired t) | 95% CI (bootstrap) | Wilcoxon p | verdict |"
            in md)
    assert f"| Final acc. | naive | 9 | {100 * np.mean(diffs):+.2f} |" in md and "| 0.0039 | behind |" in md
    half = 100 * data["summary"]["kdpsmr"]["ci95"]["final_accuracy"]["half_width"]
    assert f" +- {half:.2f} |" in md  # the per-method table: mean +- 95% t half-width


def test_report_command_rebuilds_the_paired_block(tmp_path, capsys):
    from compound_fer import cli

    (tmp_path / "rows").mkdir()
    for k, r in enumerate(_rows()):
        (tmp_path / "rows" / f"r{k}.json").write_text(json.dumps(r))
    assert cli.main(["report", str(tmp_path), "--no-figures"]) == 0
    assert "Paired against KD+PSMR" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["paired"]["metrics"]["final_accuracy"]["naive"]["n"] == 9


def test_without_the_reference_or_with_one_run_per_method_the_block_says_so(tmp_path):
    rows = [r for r in _rows() if r["method"] == "naive"]
    p = paired_block(rows)
    assert p["available"] is False and "'kdpsmr' not in this run" in p["reason"]
    one = [r for r in _rows() if r["seed"] == 0 and r["order_index"] == 0]
    assert "one run per method" in paired_block(one)["reason"]
    write_report(tmp_path, rows=one, header={"command": "test"}, figures=False)
    md = (tmp_path / "results.md").read_text()
    assert "Not computed: one run per method" in md
    assert json.loads((tmp_path / "results.json").read_text())["paired"]["available"] is False
    assert paired_block([])["reason"] == "no continual rows"
