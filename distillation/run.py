"""``edgeport distill``: teacher -> edge-sized student, as an ordinary Hugging Face model folder,
with a report that compares the two.

Steps: read the teacher and the images; compute the teacher's logits (cached by content); train
the student (checkpointed, resumable); write the student folder; evaluate both on the
evaluation set (overall and per subgroup); export both to the latency variants and time them in
turns; judge the student against ``[budgets.distill]``. Everything is made in a work folder
beside the output and moved into place at the end, so a failed or killed run leaves the previous
student (if any) untouched, and a rerun resumes from the last checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.distillation.images import ImagesError, file_digest, load_student_views, scan_images
from edgeport.distillation.report import measure_latency, write_report
from edgeport.distillation.students import (PRESETS, StudentError, build_student, default_student, parameters,
                                       student_processor)
from edgeport.distillation.summary import judge
from edgeport.distillation.teacher_outputs import default_cache_dir, teacher_key, teacher_logits
from edgeport.distillation.train import TrainSettings, train_student
from edgeport.model_source import DISTILL_REPORT, ModelSource, copy_model_metadata, is_multi_label, read_labels
from edgeport.validation.budgets import Budget
from edgeport.validation.preprocess import Preprocessing
from edgeport.validation.subgroups import SubgroupSpec

DEFAULT_LATENCY_VARIANTS = ("onnx-fp32", "tflite-fp32")


class DistillError(ValueError):
    """A distillation that cannot start: the message names the input and the fix."""


@dataclass
class DistillResult:
    out_dir: Path
    report: dict[str, Any]
    reused: bool = False  # the folder already held the student of these inputs and settings

    @property
    def passed(self) -> bool:
        """Judged on an evaluation set and within ``[budgets.distill]``."""
        return bool(self.report.get("judged")) and not self.report.get("failures")


def log(message: str) -> None:
    print(message, flush=True)


def distill_model(teacher: ModelSource, teacher_name: str, images_dir: Path, out_dir: Path, *,
                  student: str | Path | None = None, input_size: int | None = None, eval_dir: Path | None = None,
                  subgroups: SubgroupSpec | None = None, budget: Budget | None = None,
                  settings: TrainSettings = TrainSettings(), cache_dir: Path | None = None,
                  latency_variants: tuple[str, ...] = DEFAULT_LATENCY_VARIANTS, threads: int = 2,
                  label_map: dict[str, str] | None = None, force: bool = False,
                  progress: bool = True) -> DistillResult:
    """Distill ``teacher`` into a student written to ``out_dir`` (see the module docstring)."""
    out_dir = Path(out_dir)
    work = out_dir.parent / f".{out_dir.name}.distill-work"
    started = work.exists()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _distill(teacher, teacher_name, Path(images_dir), out_dir, work, student=student, input_size=input_size,
                        eval_dir=eval_dir, subgroups=subgroups, budget=budget, settings=settings,
                        cache_dir=cache_dir, latency_variants=latency_variants, threads=threads,
                        label_map=label_map, force=force, progress=progress)
    except BaseException:
        # a run that stopped before its first checkpoint leaves nothing behind; one with a
        # checkpoint keeps it, so that the next run resumes
        if not started and not (work / "checkpoint.pt").exists():
            shutil.rmtree(work, ignore_errors=True)
        raise


def _distill(teacher: ModelSource, teacher_name: str, images_dir: Path, out_dir: Path, work: Path, *,
             student: str | Path | None, input_size: int | None, eval_dir: Path | None,
             subgroups: SubgroupSpec | None, budget: Budget | None, settings: TrainSettings,
             cache_dir: Path | None, latency_variants: tuple[str, ...], threads: int,
             label_map: dict[str, str] | None, force: bool, progress: bool) -> DistillResult:
    import torch
    from transformers import AutoModelForImageClassification

    from edgeport import __version__
    from edgeport.bench import machine_info

    copy_model_metadata(teacher, work / "teacher")
    labels = read_labels(work / "teacher" / "config.json")
    multi_label = is_multi_label(work / "teacher" / "config.json")
    teacher_pre = Preprocessing.from_file(work / "teacher" / "preprocessor_config.json")
    if input_size is None:
        if teacher_pre.height != teacher_pre.width:
            raise DistillError(f"the teacher's input is {teacher_pre.height}x{teacher_pre.width}; students are "
                               "square: pass --input-size N")
        input_size = teacher_pre.height
    if input_size < 8:
        raise DistillError(f"student input size {input_size} is too small (at least 8)")
    images = scan_images(images_dir, labels, multi_label=multi_label)
    log(f"distill: {len(images.paths)} image files under {images_dir}; {images.label_note}")

    threads_all = max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads_all)
    try:
        teacher_model = AutoModelForImageClassification.from_pretrained(
            teacher.location, revision=teacher.revision,
            use_safetensors=None if teacher.allow_pickle else True).eval()
    except (OSError, ValueError) as exc:
        raise DistillError(f"cannot load the teacher {teacher_name}: {exc}") from None
    teacher_params = parameters(teacher_model)
    why = ""
    if student is None:
        student, why = default_student(teacher_params, labels, input_size)
        log(f"distill: student {student}: {why}")
    student_name = str(student)
    preset = student_name if student_name in PRESETS else None
    model = build_student(student, labels, input_size, seed=settings.seed, multi_label=multi_label)
    mean = teacher_pre.image_mean if teacher_pre.do_normalize else (0.5, 0.5, 0.5)
    std = teacher_pre.image_std if teacher_pre.do_normalize else (0.5, 0.5, 0.5)
    student_pre = Preprocessing(height=input_size, width=input_size, image_mean=tuple(mean), image_std=tuple(std))

    views, kept = load_student_views(images, student_pre.pixels, progress=progress)
    paths = [images.paths[i] for i in kept]
    image_labels = images.labels[kept] if images.labels is not None else None
    digests = [file_digest(p) for p in paths]
    described = teacher.describe()  # hashes the weights: once
    t_key = teacher_key(described, teacher_pre.to_dict())
    # a config file is keyed by its content, so that editing it trains again
    student_spec = student_name if preset or not Path(student_name).is_file() else Path(student_name).read_text()
    key = hashlib.sha256(json.dumps({
        "teacher": t_key, "images": hashlib.sha256("".join(sorted(digests)).encode()).hexdigest(),
        "labels_used": image_labels is not None, "student": student_spec, "input_size": input_size,
        "settings": settings.to_dict()}, sort_keys=True).encode()).hexdigest()[:24]
    # what the report depends on besides the student: a change re-evaluates, it does not retrain
    judged_on = {"eval": str(eval_dir) if eval_dir else None, "latency_variants": list(latency_variants),
                 "subgroups": subgroups.to_dict() if subgroups else None, "label_map": label_map or {},
                 "budget": (budget or Budget()).to_dict()}
    previous = _previous_report(out_dir) if not force else {}
    if previous.get("key") == key:
        if previous.get("judged_on") == judged_on:
            log(f"distill: {out_dir} already holds the student of these images, teacher and settings "
                "(--force to train again)")
            shutil.rmtree(work, ignore_errors=True)
            return DistillResult(out_dir, previous, reused=True)
        log(f"distill: {out_dir} already holds the student of these inputs; judging it again "
            "(the evaluation set, latency variants or budget changed)")
        staged = work / "staged" / out_dir.name
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(out_dir, staged)
        report = {k: v for k, v in previous.items() if k not in ("evaluation", "latency", "failures", "passed")}
        report.update(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), judged_on=judged_on)
        return _judge_and_write(report, teacher, teacher_name, staged, out_dir, work, eval_dir=eval_dir,
                                labels=labels, label_map=label_map, subgroups=subgroups, multi_label=multi_label,
                                budget=budget, latency_variants=latency_variants,
                                sample_image=paths[0], threads=threads, progress=progress, reused=True)

    start = time.perf_counter()

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return teacher_model(pixel_values=torch.from_numpy(batch)).logits.float().numpy()

    soft, computed = teacher_logits(paths, digests, t_key, cache_dir or default_cache_dir(), teacher_pre, infer,
                                    progress=progress, log=log)
    teacher_seconds = round(time.perf_counter() - start, 1)
    teacher_model = None  # its memory is free for the training
    result = train_student(model, views, soft, image_labels, mean=tuple(mean), std=tuple(std), settings=settings,
                           checkpoint=work / "checkpoint.pt", key=key, multi_label=multi_label,
                           progress=progress, log=log)
    log(f"distill: {result.steps} steps in {result.seconds / 60:.1f} min, stopped: {result.stopped}; "
        f"best holdout agreement {result.holdout_agreement * 100:.2f}% at step {result.best_step}")
    model.load_state_dict(result.state)
    model.eval()
    staged = work / "staged" / out_dir.name  # the folder name is the model name its exports record
    shutil.rmtree(staged, ignore_errors=True)
    model.save_pretrained(str(staged), safe_serialization=True)
    (staged / "preprocessor_config.json").write_text(
        json.dumps(student_processor(input_size, tuple(mean), tuple(std)), indent=2) + "\n")
    Preprocessing.from_file(staged / "preprocessor_config.json")  # transformers reads it as trained

    report: dict[str, Any] = {
        "key": key, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgeport_version": __version__, "machine": _machine(machine_info()),
        "teacher": {"name": teacher_name, "source": described, "parameters": teacher_params,
                    "input_size": [teacher_pre.height, teacher_pre.width]},
        "student": {"name": out_dir.name, "preset": preset, "config": None if preset else student_name, "why": why,
                    "parameters": parameters(model), "input_size": [input_size, input_size]},
        "images": {"root": str(images_dir), "files": len(images.paths), "used": len(paths),
                   "labels": images.label_note,
                   "skipped": [{"path": s.path, "reason": s.reason} for s in images.skipped]},
        "teacher_outputs": {"computed": computed, "cached": len(paths) - computed,
                            "seconds": teacher_seconds},
        "training": {"settings": settings.to_dict(), "steps": result.steps, "seconds": result.seconds,
                     "stopped": result.stopped, "best_step": result.best_step,
                     "holdout_agreement": result.holdout_agreement, "holdout_images": result.holdout_images,
                     "train_images": result.train_images, "resumed_from": result.resumed_from,
                     "device": result.device, "history": result.history},
    }
    report["judged_on"] = judged_on
    return _judge_and_write(report, teacher, teacher_name, staged, out_dir, work, eval_dir=eval_dir, labels=labels,
                            label_map=label_map, subgroups=subgroups, multi_label=multi_label, budget=budget,
                            latency_variants=latency_variants, sample_image=paths[0], threads=threads,
                            progress=progress)


def _judge_and_write(report: dict[str, Any], teacher: ModelSource, teacher_name: str, staged: Path, out_dir: Path,
                     work: Path, *, eval_dir: Path | None, labels: list[str], label_map: dict[str, str] | None,
                     subgroups: SubgroupSpec | None, multi_label: bool, budget: Budget | None,
                     latency_variants: tuple[str, ...], sample_image: Path, threads: int, progress: bool,
                     reused: bool = False) -> DistillResult:
    """Evaluate the staged student against its teacher, time both, judge, write the report and
    move the folder into place."""
    if eval_dir is not None:
        report["evaluation"] = _evaluate(teacher, work / "teacher", staged, eval_dir, labels, label_map, subgroups,
                                         multi_label, progress)
    if latency_variants:
        report["latency"] = _latency(teacher, teacher_name, staged, work / "exports", latency_variants,
                                     sample_image, threads, progress)
    failures = judge(report.get("evaluation"), budget or Budget())
    report["budget"] = (budget or Budget()).to_dict()
    report["judged"] = "evaluation" in report
    report["failures"] = failures
    report["passed"] = report["judged"] and not failures
    write_report(report, staged)
    _replace(staged, out_dir)
    shutil.rmtree(work, ignore_errors=True)
    student, teacher_params = report["student"]["parameters"], report["teacher"]["parameters"]
    log(f"distill: student written to {out_dir} ({student:,} parameters, {student / teacher_params:.1%} of the "
        f"teacher's); report {out_dir / 'distill.md'}")
    return DistillResult(out_dir, report, reused=reused)


def _previous_report(out_dir: Path) -> dict[str, Any]:
    """The distill.json of a finished student in ``out_dir`` ({} when there is none)."""
    try:
        if (out_dir / "model.safetensors").exists():
            return json.loads((out_dir / DISTILL_REPORT).read_text())
    except (OSError, json.JSONDecodeError):
        pass
    return {}


def _machine(info: dict[str, Any]) -> str:
    return f"{info.get('cpu', 'unknown CPU')} · {info.get('cores', '?')} cores"


def _replace(staged: Path, out_dir: Path) -> None:
    """Move the finished student folder into place, the previous one out of the way first."""
    old = out_dir.with_name(f".{out_dir.name}.previous")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    staged.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _evaluate(teacher: ModelSource, teacher_meta: Path, student_dir: Path, eval_dir: Path, labels: list[str],
              label_map: dict[str, str] | None, spec: SubgroupSpec | None, multi_label: bool,
              progress: bool) -> dict[str, Any]:
    """Teacher and student on the evaluation set: accuracy, agreement, per class and per subgroup."""
    from edgeport.runtimes import runner_class
    from edgeport.validation import metrics
    from edgeport.validation.dataset import load_eval_arrays, scan_eval_set
    from edgeport.validation.subgroups import assign, reference_rows, subgroup_rows

    logits = {}
    kept_paths = None
    for who, folder, location in (("teacher", teacher_meta, teacher.location), ("student", student_dir, student_dir)):
        eval_set = scan_eval_set(eval_dir, labels, label_map)
        if multi_label and not eval_set.multi_label:  # class folders: each image has its folder's label alone
            eval_set.multi_label = True
            eval_set.samples = [dataclasses.replace(s, label=-1, targets=(s.label,)) for s in eval_set.samples]
        pre = Preprocessing.from_file(folder / "preprocessor_config.json")
        inputs, truth, paths = load_eval_arrays(eval_set, pre, progress=progress)
        runner = runner_class("torch")(str(location), threads=max(1, os.cpu_count() or 1),
                                       revision=teacher.revision if who == "teacher" else None,
                                       allow_pickle=teacher.allow_pickle if who == "teacher" else False)
        with runner:
            logits[who] = np.concatenate([runner.infer(inputs[i:i + 64]) for i in range(0, len(inputs), 64)])
        kept_paths, skipped = paths, eval_set.skipped
    if multi_label:
        row = metrics.compare_multi_label(logits["student"], logits["teacher"], truth, labels)
        ref = metrics.compare_multi_label(logits["teacher"], logits["teacher"], truth, labels)
        return {"eval_dir": str(eval_dir), "images": int(len(truth)), "skipped": len(skipped),
                "teacher_accuracy": ref["accuracy"], "student_accuracy": row["accuracy"],
                "agreement": row["agreement"],
                "accuracy_drop_points": round((ref["accuracy"] - row["accuracy"]) * 100, 4)}
    teacher_acc = metrics.accuracy(logits["teacher"], truth)
    student_acc = metrics.accuracy(logits["student"], truth)
    result: dict[str, Any] = {
        "eval_dir": str(eval_dir), "images": int(len(truth)), "skipped": len(skipped),
        "teacher_accuracy": teacher_acc, "student_accuracy": student_acc,
        "agreement": metrics.agreement(logits["student"], logits["teacher"]),
        "accuracy_drop_points": round((teacher_acc - student_acc) * 100, 4),
        "teacher_per_class": metrics.per_class_accuracy(logits["teacher"], truth, labels),
        "student_per_class": metrics.per_class_accuracy(logits["student"], truth, labels),
    }
    if spec is not None:
        assignment = assign(spec, kept_paths, Path(eval_dir))
        result["subgroups"] = {**assignment.summary(spec),
                               "rows": subgroup_rows(logits["student"], logits["teacher"], truth, assignment),
                               "teacher_rows": reference_rows(logits["teacher"], truth, assignment)}
    return result


def _latency(teacher: ModelSource, teacher_name: str, student_dir: Path, work: Path, variants: tuple[str, ...],
             sample_image: Path, threads: int, progress: bool) -> list[dict[str, Any]]:
    """Export teacher and student to ``variants`` and time both, batch 1, in turns."""
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model
    from edgeport.validation.dataset import open_image

    made: dict[str, dict[str, Any]] = {}
    for who, source in (("teacher", teacher), ("student", resolve_source(str(student_dir)))):
        log(f"distill: exporting the {who} to {', '.join(variants)} for the latency comparison")
        exported = export_model(teacher_name if who == "teacher" else student_dir.name, source, work / who,
                                variants=list(variants), images_dir=None, calibration_dir=None, eval_dir=None,
                                progress=progress, precision_search=False)
        made[who] = {v["name"]: v for v in exported.manifest["variants"]}
    rows = []
    for variant in variants:
        pair = [made[who].get(variant) for who in ("teacher", "student")]
        if not all(p and p.get("status") == "ok" for p in pair):
            why = "; ".join(f"{who}: {(p or {}).get('error') or 'not made'}"
                            for who, p in zip(("teacher", "student"), pair) if not (p and p.get("status") == "ok"))
            rows.append({"variant": variant, "error": why[:300]})
            continue
        files = {who: (p["runtime"], work / who / p["path"]) for who, p in zip(("teacher", "student"), pair)}
        samples = {}
        for who in ("teacher", "student"):
            pre = Preprocessing.from_file(work / who / "preprocessor_config.json")
            samples[who] = pre(open_image(sample_image))[None]
        medians = measure_latency(files, samples, threads=threads)
        rows.append({"variant": variant, "runtime": pair[0]["runtime"], "threads": threads,
                     "teacher_ms": medians["teacher"], "student_ms": medians["student"],
                     "ratio": round(medians["student"] / medians["teacher"], 4),
                     "teacher_bytes": (work / "teacher" / pair[0]["path"]).stat().st_size,
                     "student_bytes": (work / "student" / pair[1]["path"]).stat().st_size})
    return rows


__all__ = ["DistillError", "DistillResult", "distill_model", "TrainSettings", "ImagesError", "StudentError"]
