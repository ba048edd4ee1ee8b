"""The distillation report: teacher against student on the evaluation set (overall, per class,
per subgroup), their sizes and latencies measured side by side, and the distillation budget.
``distill.json`` for machines and the gate, ``distill.md`` for people.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.model_source import DISTILL_REPORT
from edgeport.validation.metrics import latency_summary


def measure_latency(files: dict[str, tuple[str, Path]], samples: dict[str, np.ndarray], *, threads: int,
                    runs: int = 30, warmup: int = 3) -> dict[str, float]:
    """Median batch-1 milliseconds of each ``name: (runtime, file)`` on its own input
    ``samples[name]``, run in turns (one run of each, then the next round), so that every model
    sees the same machine load."""
    from edgeport.runtimes import runner_class

    runners = {name: runner_class(runtime)(str(path), threads=threads) for name, (runtime, path) in files.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():
        runner.activate()
    try:
        for i in range(warmup + runs):
            for name, runner in runners.items():
                start = time.perf_counter()
                runner.infer(samples[name])
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
    finally:
        for runner in runners.values():
            runner.deactivate()
    return {name: round(latency_summary(t)["p50"], 4) for name, t in times.items()}


def render_markdown(report: dict[str, Any]) -> str:
    """``distill.md``."""
    t, s = report["teacher"], report["student"]
    lines = [f"# Distillation: {s['name']} from {t['name']}", ""]
    verdict = "within" if report["passed"] else "**over**"
    lines += [f"{report['date']} · edgeport {report['edgeport_version']} · {report['machine']} · "
              f"student {verdict} its budget", ""]
    lines += ["| | teacher | student |", "|---|---:|---:|",
              f"| model | {t['name']} | {s['preset'] or s['name']} |",
              f"| parameters | {t['parameters']:,} | {s['parameters']:,} ({s['parameters'] / t['parameters']:.1%}) |",
              f"| input | {t['input_size'][0]}x{t['input_size'][1]} | {s['input_size'][0]}x{s['input_size'][1]} |"]
    ev = report.get("evaluation")
    if ev:
        lines += [f"| accuracy on {ev['images']} images | {ev['teacher_accuracy'] * 100:.2f}% | "
                  f"{ev['student_accuracy'] * 100:.2f}% ({-ev['accuracy_drop_points']:+.2f} points) |",
                  f"| agreement with the teacher | | {ev['agreement'] * 100:.2f}% |"]
    for row in report.get("latency", []):
        lines.append(f"| {row['variant']} p50, batch 1 | {row['teacher_ms']:.3f} ms | {row['student_ms']:.3f} ms "
                     f"({row['student_ms'] / row['teacher_ms']:.2f}x) |")
    for row in report.get("latency", []):
        if row.get("teacher_bytes") and row.get("student_bytes"):
            lines.append(f"| {row['variant']} file | {row['teacher_bytes'] / 1e6:.2f} MB | "
                         f"{row['student_bytes'] / 1e6:.2f} MB |")
    lines.append("")
    if report["failures"]:
        lines += ["## Budget missed", ""] + [f"- {f['message']}" for f in report["failures"]] + [""]
    lines += [f"Budget ([budgets.distill]): {', '.join(f'{k} {v:g}' for k, v in report['budget'].items())}.", ""]
    rows = (ev or {}).get("subgroups", {}).get("rows") or []
    if rows:
        lines += ["## Per subgroup", "",
                  "Accuracy of the teacher and the student on the same images; drift is the student's minus the "
                  f"teacher's, in points, with its 95% interval. Subgroups under {ev['subgroups']['min_size']} "
                  "images are shown, not judged.", "",
                  "| attribute | value | images | teacher | student | drift (95% CI) | agreement |",
                  "|---|---|---:|---:|---:|---|---:|"]
        for r in rows:
            ci = r["drift_ci"]
            lines.append(f"| {r['attribute']} | {r['value']} | {r['images']}{'' if r['judged'] else ' (not judged)'} | "
                         f"{r['reference_accuracy'] * 100:.1f}% | {r['accuracy'] * 100:.1f}% | "
                         f"{r['drift_points']:+.2f} ({ci[0]:+.1f} to {ci[1]:+.1f}) | {r['agreement'] * 100:.1f}% |")
        lines.append("")
    tr = report["training"]
    lines += ["## Training", "",
              f"{tr['train_images']} training images, " + (
                  f"{tr['holdout_images']} held out for early stopping" if tr["holdout_images"] else
                  "none held out (under 100 images: early stopping judged on the training images)") +
              f" ({report['images']['labels']}). {tr['steps']} steps in {tr['seconds'] / 60:.1f} min on "
              f"{tr['device']}; stopped: {tr['stopped']}. Kept the student of step {tr['best_step']} "
              f"(holdout agreement {tr['holdout_agreement'] * 100:.2f}%). Teacher outputs: "
              f"{report['teacher_outputs']['computed']} computed, {report['teacher_outputs']['cached']} from the "
              f"cache, in {report['teacher_outputs']['seconds']:.1f} s.", ""]
    if report["student"].get("why"):
        lines += [f"Student: {report['student']['why']}.", ""]
    if report["images"]["skipped"]:
        lines += [f"{len(report['images']['skipped'])} image file(s) skipped: " + "; ".join(
            f"{x['path']} ({x['reason']})" for x in report["images"]["skipped"][:10]), ""]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], folder: Path) -> None:
    """``distill.json`` and ``distill.md`` into ``folder``."""
    (folder / DISTILL_REPORT).write_text(json.dumps(report, indent=2) + "\n")
    (folder / "distill.md").write_text(render_markdown(report))
