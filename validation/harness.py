"""Feed the same preprocessed images to every variant and the reference, and judge them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.validation import metrics
from edgeport.validation.budgets import Budget, Failure
from edgeport.validation.subgroups import Assignment, reference_rows, subgroup_rows


@dataclass
class Variant:
    """An artifact to validate (or one whose export failed: ``error`` says why)."""

    name: str
    runtime: str
    precision: str
    path: str
    revision: str | None = None
    error: str | None = None
    allow_pickle: bool = False  # reference only: the user opted in to pickle weights


@dataclass(frozen=True)
class RunSettings:
    threads: int = 2
    batch: int = 8
    warmup: int = 3
    runs: int = 20
    timeout_s: float = 1800.0


@dataclass
class VariantResult:
    """Everything the report says about one variant."""

    name: str
    runtime: str
    path: str
    precision: str
    size_bytes: int | None = None
    metrics: dict = field(default_factory=dict)
    latency_ms: dict | None = None
    budget: dict = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    error: str | None = None
    localization: dict | None = None  # for an ONNX variant over budget: where it diverges
    subgroups: list[dict] | None = None  # per evaluation subgroup, when the set has them (validation.subgroups)
    not_validated: str | None = None  # why its runtime cannot run here (Core ML off macOS): neither pass nor fail

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures and self.not_validated is None

    @property
    def status(self) -> str:
        """"passed", "failed" or "not validated"."""
        if self.not_validated is not None and self.error is None:
            return "not validated"
        return "passed" if self.passed else "failed"

    def to_dict(self) -> dict:
        m = self.metrics
        return {
            "name": self.name,
            "runtime": self.runtime,
            "precision": self.precision,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "accuracy": m.get("accuracy"),
            "per_class_accuracy": m.get("per_class_accuracy"),
            "agreement": m.get("agreement"),
            "max_abs_diff": m.get("max_abs_diff"),
            "mean_abs_diff": m.get("mean_abs_diff"),
            "cosine": m.get("cosine"),
            "accuracy_drift_points": m.get("accuracy_drift_points"),
            "per_class_drift_points": m.get("per_class_drift_points"),
            "latency_ms": self.latency_ms,
            "budget": self.budget,
            "passed": None if self.status == "not validated" else self.passed,
            "status": self.status,
            "not_validated": self.not_validated,
            "error": self.error,
            "localization": self.localization,
            "subgroups": self.subgroups,
            "failures": [f.to_dict() for f in self.failures]
            + ([{"metric": "error", "value": None, "budget": None, "op": "", "message": self.error}]
               if self.error else []),
            **({"per_label": m["per_label"], "logit_max_abs_diff": m.get("logit_max_abs_diff")}
               if m.get("multi_label") else {}),
        }


class WorkerError(RuntimeError):
    pass


def artifact_size(path: str | Path) -> int | None:
    """Bytes of a file, or of every file under a directory (a SavedModel)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        if (p / "config.json").exists():  # a Hugging Face model directory: count the weights
            return sum(f.stat().st_size for f in p.glob("*.safetensors")) or None
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return None


def run_variant(variant: Variant, inputs_path: Path, settings: RunSettings, work_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Run one variant in a worker process; return (logits, per-run latency seconds)."""
    data = run_worker(variant, inputs_path, settings, work_dir)
    return data["logits"], data["latency_s"]


def run_worker(variant: Variant, inputs_path: Path, settings: RunSettings, work_dir: Path, *,
               extra_args: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Run ``python -m edgeport.validation.worker`` for ``variant``; return the arrays it saved.

    ``extra_args`` are more worker options (the bench adds --throughput-batch). Raises
    WorkerError with a readable reason when the worker fails, crashes or times out.
    """
    out = work_dir / f"{variant.name}.npz"
    cmd = [sys.executable, "-m", "edgeport.validation.worker", "--runtime", variant.runtime, "--path", variant.path,
           "--inputs", str(inputs_path), "--out", str(out), "--threads", str(settings.threads),
           "--batch", str(settings.batch), "--warmup", str(settings.warmup), "--runs", str(settings.runs),
           *extra_args]
    if variant.revision:
        cmd += ["--revision", variant.revision]
    if variant.allow_pickle:
        cmd += ["--allow-pickle"]
    env = dict(os.environ, USE_TF="0", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=settings.timeout_s)
    except subprocess.TimeoutExpired:
        raise WorkerError(f"{variant.runtime} run timed out after {settings.timeout_s:.0f} s") from None
    if proc.returncode != 0 or not out.exists():
        raise WorkerError(_describe_exit(proc.returncode, proc.stderr))
    with np.load(out) as data:
        arrays = {name: data[name] for name in data.files}
    out.unlink()
    return arrays


def _describe_exit(code: int, stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    detail = errors[-1][len("error:"):].strip() if errors else " | ".join(lines[-3:])
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"runtime crashed ({name}) {detail}".strip()
    return detail or f"worker exited with status {code}"


def validate(
    reference: Variant,
    variants: Sequence[Variant],
    inputs: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
    budget_of: Callable[[Variant], Budget],
    settings: RunSettings = RunSettings(),
    progress: bool = True,
    subgroups: Assignment | None = None,
) -> tuple[VariantResult, list[VariantResult]]:
    """Run the reference and every variant on ``inputs``; return their results.

    A variant that failed to export, crashed, or produced unusable output is a failed
    result with the reason; the others are still run. With ``subgroups`` (each input's
    subgroup values), every result also gets its figures per subgroup, judged against the
    budget's ``max_subgroup_drop``.
    """
    from tqdm import tqdm

    from edgeport.runtimes import unavailable_reason

    with tempfile.TemporaryDirectory(prefix="edgeport-validate-") as tmp:
        work = Path(tmp)
        inputs_path = work / "inputs.npy"
        np.save(inputs_path, np.ascontiguousarray(inputs, dtype=np.float32))

        bar = tqdm(total=1 + len(variants), desc="validating", unit="variant", disable=not progress)
        bar.set_postfix_str(reference.name)
        ref_result = VariantResult(reference.name, reference.runtime, reference.path, reference.precision,
                                   size_bytes=artifact_size(reference.path))
        ref_logits, ref_latency = run_variant(reference, inputs_path, settings, work)  # no reference: fatal
        ref_result.metrics = metrics.compare(ref_logits, ref_logits, labels, label_names)
        ref_result.latency_ms = metrics.latency_summary(ref_latency)
        if subgroups is not None:
            ref_result.subgroups = reference_rows(ref_logits, labels, subgroups)
        bar.update()

        results = []
        for variant in variants:
            bar.set_postfix_str(variant.name)
            result = VariantResult(variant.name, variant.runtime, variant.path, variant.precision,
                                   size_bytes=artifact_size(variant.path))
            budget = budget_of(variant)
            result.budget = budget.to_dict()
            unavailable = unavailable_reason(variant.runtime)
            if variant.error:
                result.error = f"export failed: {variant.error}"
            elif unavailable:
                result.not_validated = unavailable
            else:
                try:
                    logits, latency = run_variant(variant, inputs_path, settings, work)
                    result.metrics = metrics.compare(logits, ref_logits, labels, label_names)
                    result.metrics.update(metrics.drift(result.metrics, ref_result.metrics))
                    result.latency_ms = metrics.latency_summary(latency)
                    result.failures = budget.check(result.metrics, ref_result.metrics["accuracy"])
                    if subgroups is not None:
                        result.subgroups = subgroup_rows(logits, ref_logits, labels, subgroups)
                        result.failures += budget.check_subgroups(result.subgroups)
                except (WorkerError, ValueError) as exc:
                    result.error = str(exc)
            results.append(result)
            bar.update()
        bar.close()
    return ref_result, results
