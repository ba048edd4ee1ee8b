"""Export one model to its variants, then validate them: the two halves of every command."""
from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeport import __version__
from edgeport.model_source import ModelSource, copy_model_metadata, read_labels
from edgeport.variants import VARIANTS, ExportContext, resolve_variants
from validation.budgets import Budget, budget_for
from validation.dataset import IMAGE_EXTENSIONS, load_eval_arrays, scan_eval_set
from validation.harness import RunSettings, Variant, validate
from validation.preprocess import Preprocessing
from validation.report import build_report, failure_lines, write_reports

MANIFEST = "manifest.json"


def log(msg: str) -> None:
    print(msg, flush=True)


def sample_images(folder: Path, count: int = 20) -> list[Path]:
    """Up to ``count`` images spread evenly over ``folder`` (searched recursively, sorted)."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if len(paths) <= count:
        return paths
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]

    @property
    def failed(self) -> list[str]:
        return [v["name"] for v in self.manifest["variants"] if v["status"] != "ok"]


def export_model(
    name: str,
    source: ModelSource,
    out_dir: Path,
    *,
    variants: Sequence[str],
    images_dir: Path | None,
    opset: int = 20,
) -> ExportResult:
    """Produce every requested variant of ``source`` under ``out_dir`` and write manifest.json.

    A variant whose conversion fails is recorded with its error (and so is every variant
    converted from it); the others are still produced.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_model_metadata(source, out_dir)
    labels = read_labels(out_dir / "config.json")
    specs = resolve_variants(variants)
    images = sample_images(images_dir) if images_dir else []
    work_dir = out_dir / ".work"
    ctx = ExportContext(source.location, source.revision, out_dir, work_dir, images, opset)

    records: dict[str, dict[str, Any]] = {}
    for i, spec in enumerate(specs, 1):
        record = {"name": spec.name, "runtime": spec.runtime, "precision": spec.precision,
                  "path": spec.filename, "status": "ok", "error": None, "seconds": None}
        records[spec.name] = record
        log(f"[{name}] ({i}/{len(specs)}) {spec.name}: {spec.description}")
        if spec.requires and records[spec.requires]["status"] != "ok":
            record.update(status="failed", error=f"needs {spec.requires}, which failed")
            log(f"[{name}]   skipped: {record['error']}")
            continue
        if spec.runtime in ("savedmodel", "tflite") and not images:
            record.update(status="failed",
                          error="onnx2tf needs sample images: give the model an 'eval' or 'calibration' folder")
            log(f"[{name}]   failed: {record['error']}")
            continue
        start = time.perf_counter()
        try:
            spec.convert(ctx, out_dir / spec.filename)
        except Exception as exc:  # one failed variant must not stop the others
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            (work_dir).mkdir(parents=True, exist_ok=True)
            (work_dir / f"{spec.name}.error.log").write_text(traceback.format_exc())
            log(f"[{name}]   FAILED: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        record["seconds"] = round(time.perf_counter() - start, 2)
        if record["status"] == "ok":
            log(f"[{name}]   wrote {spec.filename} in {record['seconds']:.1f} s")

    manifest = {
        "model": name,
        "source": source.describe(),
        "labels": labels,
        "preprocessing": Preprocessing.from_file(out_dir / "preprocessor_config.json").to_dict(),
        "variants": list(records.values()),
        "sample_images": [str(p) for p in images],
        "edgeport_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = out_dir / f".tmp-{MANIFEST}"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out_dir / MANIFEST)
    if all(r["status"] == "ok" for r in records.values()):
        shutil.rmtree(work_dir, ignore_errors=True)  # keep logs only when something failed
    return ExportResult(out_dir, manifest)


def read_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `edgeport export` into {out_dir} first")
    return json.loads(path.read_text())


def validate_export(
    out_dir: Path,
    eval_dir: Path,
    budgets: dict[str, Budget],
    settings: RunSettings,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Validate every variant in ``out_dir``'s manifest on ``eval_dir``; write report.json/.md."""
    manifest = read_manifest(out_dir)
    labels = manifest["labels"]
    eval_set = scan_eval_set(eval_dir, labels)  # label mapping errors surface before any work
    preprocess = Preprocessing.from_file(out_dir / "preprocessor_config.json")
    inputs, y, _ = load_eval_arrays(eval_set, preprocess, progress=progress)
    src = manifest["source"]
    reference = Variant("reference", "torch", "fp32", src.get("path") or src["id"], revision=src.get("revision"))
    variants = [
        Variant(v["name"], v["runtime"], v["precision"], str(out_dir / v["path"]),
                error=v["error"] if v["status"] != "ok" else None)
        for v in manifest["variants"]
    ]
    ref, results = validate(
        reference, variants, inputs, y, labels,
        lambda v: budget_for(v.name, v.precision, budgets), settings, progress=progress,
    )
    report = build_report(
        model=manifest["model"],
        source=src,
        labels=labels,
        eval_set={
            "path": str(eval_dir),
            "images": int(len(y)),
            "skipped": len(eval_set.skipped),
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in eval_set.skipped],
            "folders": eval_set.folder_to_label,
        },
        reference=ref,
        variants=results,
        settings={"threads": settings.threads, "batch": settings.batch, "warmup": settings.warmup,
                  "latency_runs": settings.runs, "preprocessing": manifest["preprocessing"]},
        edgeport_version=__version__,
    )
    json_path, md_path = write_reports(report, out_dir)
    _print_summary(report, json_path, md_path)
    return report


def _print_summary(report: dict[str, Any], json_path: Path, md_path: Path) -> None:
    ref = report["reference"]
    log(f"[{report['model']}] reference accuracy {ref['accuracy'] * 100:.2f}% on "
        f"{report['eval_set']['images']} images ({report['eval_set']['skipped']} skipped)")
    for v in report["variants"]:
        status = "pass" if v["passed"] else "FAIL"
        acc = "–" if v["accuracy"] is None else f"{v['accuracy'] * 100:.2f}%"
        diff = "–" if v["max_abs_diff"] is None else f"{v['max_abs_diff']:.2e}"
        p50 = "–" if not v["latency_ms"] else f"{v['latency_ms']['p50']:.2f} ms"
        log(f"[{report['model']}]   {status}  {v['name']:<18} acc {acc:>8}  max|Δ| {diff:>9}  p50 {p50}")
    for line in failure_lines(report):
        log(f"FAIL {line}")
    log(f"[{report['model']}] report: {md_path} and {json_path.name}")


__all__ = ["export_model", "validate_export", "read_manifest", "sample_images", "VARIANTS"]
