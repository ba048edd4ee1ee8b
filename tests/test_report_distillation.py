"""A distilled student's report: its distillation failures reach the gate, and report.md / report.html
show the teacher-vs-student section (no model is loaded: the report dict is built by hand)."""
from __future__ import annotations

import copy

import pytest

from edgeport.validation.gate import gate
from edgeport.validation.harness import VariantResult
from edgeport.validation.report import build_report, failure_lines, render_markdown
from edgeport.validation.report_html import render_html

DISTILLATION = {
    "teacher": "gender-vit",
    "student_preset": "mobilenet_v2-0.35",
    "teacher_parameters": 1893282,
    "student_parameters": 398690,
    "judged": True,
    "passed": False,
    "budget": {"min_agreement": 0.9, "max_accuracy_drop": 2.0, "max_subgroup_drop": 4.0},
    "failures": [{"metric": "accuracy_drop_points", "value": 2.5, "budget": 2.0, "op": "<=",
                  "message": "accuracy_drop_points 2.5 (budget <= 2)"}],
    "evaluation": {"images": 2000, "teacher_accuracy": 0.8065, "student_accuracy": 0.7915,
                   "agreement": 0.912, "accuracy_drop_points": 1.5},
    "worst_subgroups": [
        {"attribute": "age", "value": "0-9", "images": 136, "accuracy": 0.45, "reference_accuracy": 0.62,
         "drift_points": -16.9, "drift_ci": [-26.3, -7.0], "judged": True, "agreement": 0.64}],
    "latency": [
        {"variant": "tflite-fp32", "runtime": "tflite", "threads": 2, "teacher_ms": 1.92, "student_ms": 0.31,
         "ratio": 0.16, "teacher_bytes": 7651952, "student_bytes": 1611116},
        {"variant": "onnx-fp32", "error": "teacher: export | failed"}],
    "report": "distill.md",
}


def _report(distillation: dict | None = DISTILLATION) -> dict:
    ref = VariantResult("reference", "torch", "ref", "fp32", metrics={"accuracy": 0.79},
                        latency_ms={"p50": 0.5, "p90": 0.6})
    ok = VariantResult("tflite-fp32", "tflite", "m.tflite", "fp32", size_bytes=1611116,
                       metrics={"accuracy": 0.79, "agreement": 1.0, "max_abs_diff": 1e-6, "mean_abs_diff": 1e-7,
                                "cosine": 1.0, "accuracy_drift_points": 0.0,
                                "per_class_drift_points": {"female": 0.0, "male": 0.0}},
                       latency_ms={"p50": 0.31, "p90": 0.4})
    report = build_report(model="gender-student", source={"path": "students/gender-student"},
                          labels=["female", "male"], eval_set={"path": "faces", "images": 2000, "skipped": 0},
                          reference=ref, variants=[ok], settings={}, edgeport_version="t")
    if distillation is not None:
        report["distillation"] = copy.deepcopy(distillation)
    return report


def test_a_missed_distillation_budget_is_a_failure_line_and_fails_the_gate():
    report = _report()
    assert failure_lines(report) == ["gender-student/distillation: accuracy_drop_points 2.5 (budget <= 2)"]
    assert gate(report) == ["FAIL gender-student/distillation: accuracy_drop_points 2.5 (budget <= 2)"]


def test_no_distillation_failure_line_within_budget_or_without_the_key():
    within = copy.deepcopy(DISTILLATION) | {"failures": [], "passed": True}
    assert failure_lines(_report(within)) == []
    assert gate(_report(within)) == []
    assert failure_lines(_report(None)) == []
    # a variant's own failures are listed as before, and the distillation one after them
    report = _report()
    report["variants"][0]["failures"] = [{"metric": "agreement", "value": 0.5, "budget": 0.99, "op": ">=",
                                          "message": "agreement 0.5 (budget >= 0.99)"}]
    assert failure_lines(report) == ["gender-student/tflite-fp32: agreement 0.5 (budget >= 0.99)",
                                     "gender-student/distillation: accuracy_drop_points 2.5 (budget <= 2)"]


def test_markdown_has_the_distillation_section():
    md = render_markdown(_report())
    assert "## Distilled from gender-vit" in md
    assert "preset `mobilenet_v2-0.35`" in md
    assert "| parameters | 1,893,282 | 398,690 | 0.21× |" in md
    assert "| accuracy on 2000 images | 80.65% | 79.15% | -1.50 points |" in md
    assert "| agreement with the teacher (top-1) | – | 91.20% | – |" in md
    assert "| tflite-fp32 p50 ms (batch 1, tflite, 2 threads) | 1.920 | 0.310 | 0.16× |" in md
    assert "| onnx-fp32 p50 ms | – | – | not measured: teacher: export \\| failed |" in md  # '|' escaped
    assert "**Misses its distillation budget**" in md
    assert "- accuracy_drop_points 2.5 (budget <= 2)" in md
    assert "| age=0-9 | 136 | 45.00% | 62.00% | -16.90 (-26.3 to -7.0) | 64.00% |" in md
    assert "Full distillation report: `distill.md`" in md
    # also in the Failures list, with the model prefix the gate prints
    assert "- gender-student/distillation: accuracy_drop_points 2.5 (budget <= 2)" in md
    # placed after the variant table, before the failure list
    assert md.index("| pass | tflite-fp32 |") < md.index("## Distilled from") < md.index("## Failures")


@pytest.mark.parametrize("judged, verdict", [
    (True, "Within its distillation budget (min_agreement 0.9, max_accuracy_drop 2, max_subgroup_drop 4)."),
    (False, "Not judged: no evaluation set at distill time."),
])
def test_markdown_verdict_without_failures(judged, verdict):
    d = copy.deepcopy(DISTILLATION) | {"failures": [], "judged": judged, "passed": judged, "worst_subgroups": []}
    if not judged:
        d["evaluation"] = None
    md = render_markdown(_report(d))
    assert verdict in md
    assert "Misses its distillation budget" not in md and "## Failures" not in md
    assert "Worst subgroups" not in md
    assert ("accuracy on 2000 images" in md) == judged


def test_markdown_without_distillation_is_unchanged():
    md = render_markdown(_report(None))
    assert "Distilled from" not in md and "distill.md" not in md


def test_html_has_the_distillation_section():
    page = render_html(_report())
    assert "<h2 id='distillation'>Distilled from gender-vit</h2>" in page
    assert "<tr><td>parameters</td><td>1,893,282</td><td>398,690</td><td>0.21×</td></tr>" in page
    assert "<td>tflite-fp32 p50 ms (batch 1, tflite, 2 threads)</td><td>1.920</td><td>0.310</td><td>0.16×</td>" in page
    assert "<li>accuracy_drop_points 2.5 (budget &lt;= 2)</li>" in page  # escaped
    assert "<td>age=0-9</td><td>136</td><td>45.00%</td><td>62.00%</td>" in page
    assert "<a href='distill.md'>" in page
    # after the main variant table, before the charts
    assert page.index("id=\"variants\"") < page.index("id='distillation'") < page.index("id=\"latency-vs-drift\"")
    hostile = copy.deepcopy(DISTILLATION) | {"teacher": "<b>evil</b>"}
    assert "<b>evil</b>" not in render_html(_report(hostile))
    assert "&lt;b&gt;evil&lt;/b&gt;" in render_html(_report(hostile))


def test_html_without_distillation_has_no_section():
    page = render_html(_report(None))
    assert "id='distillation'" not in page and "Distilled from" not in page
