"""Pure functions over logits: how far a variant is from the reference, and how accurate."""
from __future__ import annotations

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float | None]:
    """Accuracy per label (None for a label with no images)."""
    pred = np.argmax(logits, axis=1)
    out: dict[str, float | None] = {}
    for i, name in enumerate(names):
        mask = labels == i
        out[name] = float(np.mean(pred[mask] == i)) if mask.any() else None
    return out


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of rows whose top-1 class equals the reference's top-1 class."""
    return float(np.mean(np.argmax(logits, axis=1) == np.argmax(reference, axis=1)))


def abs_diff(logits: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(max, mean) absolute difference between two logit arrays."""
    d = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    return float(d.max()), float(d.mean())


def cosine(logits: np.ndarray, reference: np.ndarray) -> float:
    """Mean over rows of the cosine similarity between logit vectors."""
    a = logits.astype(np.float64)
    b = reference.astype(np.float64)
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(den > 0, num / den, np.where(np.all(a == b, axis=1), 1.0, 0.0))
    return float(np.mean(cos))


def latency_summary(seconds: np.ndarray) -> dict[str, float]:
    """p50 and p90 latency in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90))}


MULTI_LABEL_THRESHOLD = 0.5  # a label applies when its sigmoid probability exceeds this


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Per-label probabilities of a multi-label model (float64)."""
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def compare(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Every accuracy and parity metric of one variant against the reference. ``labels``: N class
    indices, or N x L (0/1) for a multi-label evaluation set (``compare_multi_label``)."""
    if logits.shape != reference.shape:
        raise ValueError(f"output shape {logits.shape} differs from the reference's {reference.shape}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("output holds NaN or infinite values")
    if labels.ndim == 2:
        return compare_multi_label(logits, reference, labels, names)
    max_d, mean_d = abs_diff(logits, reference)
    return {
        "accuracy": accuracy(logits, labels),
        "per_class_accuracy": per_class_accuracy(logits, labels, names),
        "agreement": agreement(logits, reference),
        "max_abs_diff": max_d,
        "mean_abs_diff": mean_d,
        "cosine": cosine(logits, reference),
    }


def compare_multi_label(logits: np.ndarray, reference: np.ndarray, targets: np.ndarray, names: list[str]) -> dict:
    """The metrics of ``compare`` for a multi-label model, where each label is its own yes/no
    decision (sigmoid probability > 0.5), as the Hugging Face pipeline scores such a model:
    ``accuracy`` is the share of (image, label) decisions that match the targets, ``agreement``
    the share that match the reference's decisions, ``max_abs_diff``/``mean_abs_diff`` compare
    probabilities (what an app reads), ``per_class_accuracy`` is per label, and ``per_label``
    holds each label's agreement and max abs probability difference."""
    probs, ref_probs = sigmoid(logits), sigmoid(reference)
    decided, ref_decided = probs > MULTI_LABEL_THRESHOLD, ref_probs > MULTI_LABEL_THRESHOLD
    diff = np.abs(probs - ref_probs)
    correct = decided == targets.astype(bool)
    return {
        "accuracy": float(np.mean(correct)),
        "per_class_accuracy": {name: float(np.mean(correct[:, i])) for i, name in enumerate(names)},
        "agreement": float(np.mean(decided == ref_decided)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "cosine": cosine(logits, reference),
        "logit_max_abs_diff": abs_diff(logits, reference)[0],
        "per_label": {name: {"agreement": float(np.mean(decided[:, i] == ref_decided[:, i])),
                             "max_abs_diff": float(diff[:, i].max())} for i, name in enumerate(names)},
        "multi_label": True,
    }


def drift(variant: dict, reference: dict) -> dict:
    """Accuracy change from the reference in percentage points, overall and per class."""
    per_class = {
        name: None if acc is None or reference["per_class_accuracy"].get(name) is None
        else (acc - reference["per_class_accuracy"][name]) * 100.0
        for name, acc in variant["per_class_accuracy"].items()
    }
    return {"accuracy_drift_points": (variant["accuracy"] - reference["accuracy"]) * 100.0,
            "per_class_drift_points": per_class}
