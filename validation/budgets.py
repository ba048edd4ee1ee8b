"""Budgets are data: limits per metric, looked up by variant name or precision."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# metric name in the report -> (budget field, comparison) ; "min" means value >= budget
_RULES = {
    "min_agreement": ("agreement", "min"),
    "max_abs_diff": ("max_abs_diff", "max"),
    "max_mean_abs_diff": ("mean_abs_diff", "max"),
    "min_cosine": ("cosine", "min"),
    "min_accuracy": ("accuracy", "min"),
}


class BudgetError(ValueError):
    """A budget in the configuration is malformed."""


@dataclass(frozen=True)
class Failure:
    """One missed budget: which metric, its value and the limit."""

    metric: str
    value: float | None
    budget: float | None
    op: str  # ">=" or "<=" : what the value should have been
    detail: str = ""  # where and on what, when the metric is not the whole evaluation set's

    def __str__(self) -> str:
        if self.value is None:
            return self.metric
        return f"{self.metric} {_fmt(self.value)} (budget {self.op} {_fmt(self.budget)})" \
            + (f" {self.detail}" if self.detail else "")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "budget": self.budget, "op": self.op,
                "message": str(self)}


@dataclass(frozen=True)
class Budget:
    """Limits for one variant. ``max_accuracy_drop`` is in percentage points vs the reference;
    ``max_subgroup_drop`` the same on each evaluation subgroup large enough to judge
    (``validation.subgroups``)."""

    min_agreement: float | None = None
    max_abs_diff: float | None = None
    max_mean_abs_diff: float | None = None
    min_cosine: float | None = None
    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    max_subgroup_drop: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str) -> "Budget":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BudgetError(f"{where}: unknown budget key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise BudgetError(f"{where}: budget values must be numbers ({exc})") from None

    def merged(self, other: "Budget") -> "Budget":
        """This budget with every limit that ``other`` sets replaced."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) is not None})
        return Budget(**values)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def check(self, metrics: dict[str, Any], reference_accuracy: float | None) -> list[Failure]:
        """Every limit this budget sets that ``metrics`` misses."""
        failures = []
        for key, (metric, kind) in _RULES.items():
            limit = getattr(self, key)
            if limit is None:
                continue
            value = metrics.get(metric)
            if kind == "min" and not value >= limit:
                failures.append(Failure(metric, value, limit, ">="))
            elif kind == "max" and not value <= limit:
                failures.append(Failure(metric, value, limit, "<="))
        if self.min_agreement is not None:  # a multi-label model: every label's decisions, not only the mean
            for label, row in (metrics.get("per_label") or {}).items():
                if not row["agreement"] >= self.min_agreement:
                    failures.append(Failure("label_agreement", row["agreement"], self.min_agreement, ">=",
                                            f"on label {label!r}: its thresholded decisions agree with the "
                                            f"reference's on {row['agreement'] * 100:.2f}% of the images"))
        if self.max_accuracy_drop is not None and reference_accuracy is not None:
            # rounded: 71.25% - 70.25% is 1.0000000000000142 points in floats, and 1 point is within "<= 1"
            drop = round((reference_accuracy - metrics["accuracy"]) * 100.0, 9)
            if not drop <= self.max_accuracy_drop:
                failures.append(Failure("accuracy_drop_points", drop, self.max_accuracy_drop, "<="))
        return failures

    def check_subgroups(self, rows: list[dict[str, Any]] | None) -> list[Failure]:
        """A failure per judged subgroup whose accuracy fell more than ``max_subgroup_drop`` points."""
        if self.max_subgroup_drop is None or not rows:
            return []
        failures = []
        for r in rows:
            drop = round(-r["drift_points"], 9)
            if r["judged"] and not drop <= self.max_subgroup_drop:
                ci = r.get("drift_ci")
                interval = f", drop 95% CI {-ci[1]:.2f} to {-ci[0]:.2f}" if ci else ""
                failures.append(Failure(
                    "subgroup_accuracy_drop_points", drop, self.max_subgroup_drop, "<=",
                    f"on {r['attribute']}={r['value']} ({r['images']} images): accuracy "
                    f"{r['accuracy'] * 100:.2f}% against the reference's {r['reference_accuracy'] * 100:.2f}% "
                    f"on the same images{interval}"))
        return failures


def budget_for(variant: str, precision: str, budgets: dict[str, Budget]) -> Budget:
    """The budget of a variant: its precision's (``fp32``...), overridden by its own name's."""
    budget = budgets.get(precision, Budget())
    if variant in budgets:
        budget = budget.merged(budgets[variant])
    return budget


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.2e}"
