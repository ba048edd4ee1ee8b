"""The CI gate: budgets missed, too many unreadable images, and regressions against a baseline.

`edgeport gate REPORT [--baseline OLD_REPORT]` reads report.json files only, so it can run
in a later CI job than the export, or compare the report of this commit with the one
saved from the main branch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeport.validation.report import failure_lines


@dataclass(frozen=True)
class GateSettings:
    """Margins of the regression gate, in percentage points, and the skipped-image limit."""

    max_accuracy_regression: float = 0.5  # a variant may lose this much accuracy vs the baseline
    max_agreement_regression: float = 0.5  # ... and this much top-1 agreement with its reference
    max_skipped_fraction: float = 0.02  # of the evaluation images that could not be read


def gate(report: dict[str, Any], baseline: dict[str, Any] | None = None,
         settings: GateSettings = GateSettings()) -> list[str]:
    """Every reason to fail this report, one readable line each; empty when it passes."""
    reasons = [f"FAIL {line}" for line in failure_lines(report)]
    skipped = too_many_skipped(report, settings)
    if skipped:
        reasons.append(skipped)
    if baseline is not None:
        reasons += regressions(report, baseline, settings)
    return reasons


def too_many_skipped(report: dict[str, Any], settings: GateSettings) -> str | None:
    """The failure line when more evaluation images were unreadable than allowed."""
    ev = report["eval_set"]
    total = ev["images"] + ev["skipped"]
    if total and ev["skipped"] / total > settings.max_skipped_fraction:
        return (f"FAIL {report['model']}: {ev['skipped']} of {total} evaluation images could not be read "
                f"({ev['skipped'] / total:.1%}, allowed {settings.max_skipped_fraction:.1%}); "
                "see eval_set.skipped_files in report.json")
    return None


def regressions(report: dict[str, Any], baseline: dict[str, Any], settings: GateSettings) -> list[str]:
    """Variants that got worse than in ``baseline`` by more than the margins."""
    model = report["model"]
    now = {v["name"]: v for v in report["variants"]}
    lines = []
    if baseline.get("model") != model:
        return [f"FAIL {model}: the baseline report is for model {baseline.get('model')!r}, not {model!r}"]
    for old in baseline["variants"]:
        name = old["name"]
        new = now.get(name)
        if new is None:
            lines.append(f"REGRESSION {model}/{name}: in the baseline, missing from this report")
            continue
        for metric, margin in (("accuracy", settings.max_accuracy_regression),
                               ("agreement", settings.max_agreement_regression)):
            before, after = old.get(metric), new.get(metric)
            if before is None:
                continue
            if after is None:
                lines.append(f"REGRESSION {model}/{name}: {metric} {before:.2%} in the baseline, "
                             f"none now ({new.get('error') or 'not measured'})")
                continue
            drop = (before - after) * 100.0
            if drop > margin:
                lines.append(f"REGRESSION {model}/{name}: {metric} {before:.2%} -> {after:.2%} "
                             f"(-{drop:.2f} points; allowed -{margin:.2f})")
    return lines
