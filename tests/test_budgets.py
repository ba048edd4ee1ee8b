"""Budgets are data; checks name the metric, the value and the limit."""
from __future__ import annotations

import numpy as np
import pytest

from edgeport.validation import metrics
from edgeport.validation.budgets import Budget, BudgetError, budget_for


def test_failures_name_metric_value_and_budget():
    b = Budget(min_agreement=1.0, max_abs_diff=1e-4)
    failures = b.check({"agreement": 0.9, "max_abs_diff": 2e-3}, reference_accuracy=None)
    assert [f.metric for f in failures] == ["agreement", "max_abs_diff"]
    assert str(failures[1]) == "max_abs_diff 0.002 (budget <= 1.00e-04)"
    assert b.check({"agreement": 1.0, "max_abs_diff": 1e-5}, reference_accuracy=None) == []


def test_accuracy_drop_in_points():
    b = Budget(max_accuracy_drop=0.5)
    assert b.check({"accuracy": 0.80}, reference_accuracy=0.804) == []
    (f,) = b.check({"accuracy": 0.79}, reference_accuracy=0.80)
    assert f.metric == "accuracy_drop_points" and f.value == pytest.approx(1.0)


def test_nan_metric_fails():
    assert Budget(max_abs_diff=1.0).check({"max_abs_diff": float("nan")}, None)


def test_variant_budget_overrides_precision_budget():
    budgets = {"fp32": Budget(min_agreement=1.0, max_abs_diff=1e-4), "tflite-fp32": Budget(max_abs_diff=1e-3)}
    assert budget_for("tflite-fp32", "fp32", budgets) == Budget(min_agreement=1.0, max_abs_diff=1e-3)
    assert budget_for("onnx-fp32", "fp32", budgets) == Budget(min_agreement=1.0, max_abs_diff=1e-4)


def test_unknown_budget_key_is_an_error():
    with pytest.raises(BudgetError, match="max_diff"):
        Budget.from_dict({"max_diff": 1}, where="cfg")


def test_metrics():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    out = np.array([[0.9, 0.1], [0.6, 0.4], [2.0, 1.0]])
    labels = np.array([0, 1, 1])
    assert metrics.agreement(out, ref) == pytest.approx(2 / 3)
    assert metrics.accuracy(ref, labels) == pytest.approx(2 / 3)
    assert metrics.abs_diff(out, ref) == (pytest.approx(0.6), pytest.approx(1.4 / 6))
    assert metrics.cosine(ref, ref) == pytest.approx(1.0)
    assert metrics.per_class_accuracy(ref, labels, ["a", "b"]) == {"a": 1.0, "b": 0.5}
    lat = metrics.latency_summary(np.array([0.001, 0.002, 0.003]))
    assert lat["p50"] == pytest.approx(2.0)


def test_a_drop_of_exactly_the_budget_passes_despite_float_rounding():
    from edgeport.validation.budgets import Budget

    budget = Budget(max_accuracy_drop=1.0)
    assert budget.check({"accuracy": 0.7025}, 0.7125) == []  # 1.0000000000000142 points in floats
    (failure,) = budget.check({"accuracy": 0.7000}, 0.7125)
    assert failure.metric == "accuracy_drop_points" and failure.value == 1.25
