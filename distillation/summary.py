"""A distilled student's verdict against its teacher, for the report of its export.

``edgeport distill`` writes ``distill.json`` into the student's folder; the export copies it
beside the artifacts, and validation puts this summary into ``report.json`` (``distillation``),
judged again with the config's ``[budgets.distill]`` of the day, so that the gate fails a student
that lost too much against its teacher as it fails a variant that lost too much against its
reference.
"""
from __future__ import annotations

from typing import Any

from edgeport.model_source import DISTILL_REPORT
from edgeport.validation.budgets import Budget
from edgeport.validation.subgroups import worst


def distillation_summary(distilled: dict[str, Any], budget: Budget | None) -> dict[str, Any]:
    """The ``distillation`` section of report.json from ``distill.json``, with its failures under
    ``budget`` (default: the one ``distill.json`` was judged with)."""
    budget = budget if budget is not None else Budget.from_dict(distilled.get("budget") or {}, where=DISTILL_REPORT)
    ev = distilled.get("evaluation")
    rows = ((ev or {}).get("subgroups") or {}).get("rows")
    failures = judge(ev, budget)
    return {
        "teacher": distilled["teacher"]["name"],
        "student_preset": distilled["student"].get("preset"),
        "teacher_parameters": distilled["teacher"]["parameters"],
        "student_parameters": distilled["student"]["parameters"],
        "judged": bool(ev),
        "passed": bool(ev) and not failures,
        "budget": budget.to_dict(),
        "failures": failures,
        "evaluation": {k: ev[k] for k in ("images", "teacher_accuracy", "student_accuracy", "agreement",
                                          "accuracy_drop_points")} if ev else None,
        "worst_subgroups": worst(rows) if rows else [],
        "latency": distilled.get("latency") or [],
        "report": "distill.md",
    }


def judge(evaluation: dict[str, Any] | None, budget: Budget) -> list[dict[str, Any]]:
    """The budget's failures for a student's ``evaluation`` against its teacher (distill.json's),
    overall and per subgroup; none when there was no evaluation set."""
    if not evaluation:
        return []
    metrics = {"accuracy": evaluation["student_accuracy"], "agreement": evaluation["agreement"]}
    failures = budget.check(metrics, evaluation["teacher_accuracy"])
    failures += budget.check_subgroups((evaluation.get("subgroups") or {}).get("rows"))
    return [f.to_dict() for f in failures]
