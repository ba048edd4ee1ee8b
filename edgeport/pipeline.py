"""Export one model to its variants, then validate them: the two halves of every command."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import __version__
from edgeport.backends import cannot_make, missing_message
from edgeport.converters.atomic import atomic_path
from edgeport.converters.checksums import artifact_sha256, sha256_file
from edgeport.mobile_bundle import write_mobile_bundle
from edgeport.distillation.summary import distillation_summary
from edgeport.model_source import (DISTILL_REPORT, ModelSource, copy_model_metadata, is_multi_label, model_folder,
                                   read_labels)
from edgeport.portable import absolute_from, relative_path, scrub, scrub_prefixes
from edgeport.stage import StageResult, run_stage, run_stage_in_process, save_context
from edgeport.variants import (CALIBRATED, FULL_INTEGER_ACTIVATIONS, SEARCHED, TFLITE_CALIBRATED, VARIANTS,
                               ExportContext, resolve_variants)
from edgeport.runtimes.tflite_runner import tflite_io_details
from edgeport.converters.onnx_batch import BatchCheckError, ensure_any_batch_or_pin
from edgeport.validation.budgets import Budget, budget_for
from edgeport.validation.metrics import MULTI_LABEL_THRESHOLD
from edgeport.validation.dataset import IMAGE_EXTENSIONS, EvalSet, load_eval_arrays, read_label_csv, scan_eval_set
from edgeport.validation.harness import RunSettings, Variant, validate
from edgeport.validation.preprocess import Preprocessing, fix_input_size
from edgeport.validation.report import build_report, failure_lines, not_validated_lines, write_reports
from edgeport.validation.status import status_of
from edgeport.validation.subgroups import SubgroupSpec, assign

MANIFEST = "manifest.json"
# manifest.json's sample_images when no image folder was given: onnx2tf got a generated sample.
SAMPLE_GENERATED = "generated (no image folder; converters.onnx2tf_tool.generated_sample)"


def log(msg: str) -> None:
    print(msg, flush=True)


def list_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursively, sorted, hidden files excluded), or every
    image a multi-label evaluation CSV names."""
    if folder.suffix.lower() == ".csv" and folder.is_file():
        named = [folder.parent / (row["file"] or "").strip() for row in read_label_csv(folder)]
        return sorted(p for p in named if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def images_with_hashes(paths: Sequence[Path], hashes: set[str]) -> list[Path]:
    """The images among ``paths`` whose content has one of the sha256 ``hashes``."""
    return [p for p in paths if sha256_file(p) in hashes] if hashes else []


def check_disjoint(calibration_sha256: Sequence[str], evaluation: Sequence[Path], calib_dir: Path,
                   eval_dir: Path) -> None:
    """Refuse calibration images that also appear (byte for byte) in the evaluation set."""
    shared = images_with_hashes(evaluation, set(calibration_sha256))
    if shared:
        raise ValueError(
            f"{len(shared)} image(s) of the evaluation set {eval_dir} are also in the calibration set "
            f"{calib_dir} (e.g. {shared[0].name}); calibrating on evaluation images hides quantization "
            "error: use disjoint folders"
        )


def calibration_arrays(paths: Sequence[Path], pre: Preprocessing) -> np.ndarray:
    """The calibration images, preprocessed exactly as evaluation images (N x C x H x W)."""
    return np.stack([pre(pre.open(p)) for p in paths]).astype(np.float32)


def calibration_labels(paths: Sequence[Path], folder: Path, labels: Sequence[str],
                       label_map: dict[str, str] | None = None) -> np.ndarray:
    """Class index of each calibration image from its class folder (as for evaluation), -1 where none."""
    from edgeport.validation.dataset import LabelMappingError, map_folders_to_labels

    folders = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else "" for p in paths]
    try:
        mapping = map_folders_to_labels(sorted({f for f in folders if f}), labels, label_map)
    except LabelMappingError:
        mapping = {}  # not class folders: the search judges agreement with the float file only
    return np.array([mapping.get(f, -1) for f in folders], dtype=np.int64)


def int8_targets(budgets: dict[str, Budget] | None) -> dict[str, dict[str, float | None]]:
    """Each searched int8 variant's agreement and accuracy-drop budget, for the precision search."""
    from edgeport.config import DEFAULT_BUDGETS

    budgets = DEFAULT_BUDGETS if budgets is None else budgets
    out = {}
    for name in sorted(SEARCHED):
        budget = budget_for(name, VARIANTS[name].precision, budgets)
        out[name] = {"min_agreement": budget.min_agreement, "max_accuracy_drop": budget.max_accuracy_drop}
    return out


def sample_images(folder: Path, count: int = 20) -> list[Path]:
    """Up to ``count`` images spread evenly over ``folder`` (searched recursively, sorted)."""
    paths = list_images(folder)
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
    calibration_dir: Path | None = None,
    eval_dir: Path | None = None,
    opset: int = 20,
    isolate: bool = True,
    force: bool = False,
    full_integer_activations: str = "int8",
    project_dir: Path | None = None,
    progress: bool = True,
    budgets: dict[str, Budget] | None = None,
    precision_search: bool = True,
    label_map: dict[str, str] | None = None,
    input_size: tuple[int, int] | None = None,
    decode: str = "exact",
) -> ExportResult:
    """Produce every requested variant of ``source`` under ``out_dir`` and write manifest.json.

    ``calibration_dir`` holds the real images that calibrate int8 variants (searched
    recursively); it must share no image with ``eval_dir``. ``images_dir`` (default: the
    calibration folder) gives onnx2tf its sample. A variant whose conversion fails is
    recorded with its error (and so is every variant converted from it); the others are
    still produced. Each step runs in its own process (``isolate``; see edgeport.stage), so
    its wall time and peak memory are recorded and its memory is returned when it ends.

    The manifest is rewritten after every step, so a run that is killed keeps the record of
    what it finished; the next run reuses every artifact whose inputs (source weights,
    opset, calibration images, the artifact it is converted from) are unchanged and whose
    file still has the sha256 the manifest records, unless ``force``.
    ``full_integer_activations`` ("int8" or "int16") is the activation width of the
    full-integer TFLite variants (see converters.tflite_int8).

    Paths in the manifest are relative: artifacts to ``out_dir``, the source and image
    folders to ``project_dir`` (default: the working folder; the CLI passes the config
    file's folder), which the manifest records relative to ``out_dir`` (edgeport.portable).
    Without any image folder, onnx2tf gets a generated sample (converters.onnx2tf_tool);
    only the calibrated variants need real images, and they fail naming the folder to set.
    ``progress=False`` silences the heartbeat lines of long steps.

    ``budgets`` (default: the config defaults, ``edgeport.config.DEFAULT_BUDGETS``) are what the
    calibrated int8 variants' precision search meets on held-out calibration images
    (converters.precision_search); ``precision_search=False`` makes them all-int8 without a
    search. The calibration folder's class folders, mapped to labels as the evaluation
    folders are (``label_map``), give the held-out images labels, so the search can judge the
    accuracy drop too; without them it judges agreement only.

    ``input_size`` (H, W) fixes the input of a model whose processor does not (a shortest-edge
    resize without a crop): the copy of its processor file beside the artifacts resizes to it,
    and the manifest records it (validation.preprocess.fix_input_size).

    ``decode`` ("exact" or "draft", validation.preprocess.DECODE_MODES) is how images are decoded
    for this model everywhere: the calibration here, validation and serving (the manifest records it).
    """
    needs = missing_message("export")
    if needs:  # reading the model, and every converter, needs torch and transformers
        raise ValueError(f"exporting {name} {needs}")
    if full_integer_activations not in FULL_INTEGER_ACTIVATIONS:
        raise ValueError(f"full_integer_activations must be one of {', '.join(FULL_INTEGER_ACTIVATIONS)}, "
                         f"not {full_integer_activations!r}")
    project_dir = Path(project_dir or Path.cwd()).resolve()
    # Absolute from here on: onnx2tf and the static quantizer run from scratch folders, where a
    # relative --out (e.g. `edgeport export m --out artifacts/m`) would name nothing.
    out_dir = Path(out_dir).resolve()
    specs = resolve_variants(variants)
    names = [s.name for s in specs]
    calib_paths = list_images(calibration_dir) if calibration_dir else []
    calib_sha = [sha256_file(p) for p in calib_paths]
    if calib_paths and eval_dir:
        check_disjoint(calib_sha, list_images(eval_dir), calibration_dir, eval_dir)
    # a hub model as its snapshot folder at the pinned revision (fetched before anything is
    # written): every converter then reads files, and none asks the Hub for another revision
    model_dir = model_folder(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = {} if force else _previous_records(out_dir)
    copy_model_metadata(source, out_dir, model_dir)
    labels = read_labels(out_dir / "config.json")
    resized = bool(input_size) and fix_input_size(out_dir / "preprocessor_config.json", input_size)
    preprocessing = Preprocessing.from_file(out_dir / "preprocessor_config.json", decode=decode)
    images = sample_images(images_dir or calibration_dir) if (images_dir or calibration_dir) else []
    work_dir = out_dir / ".work"
    ctx = ExportContext(str(model_dir), source.revision if source.local else None, out_dir, work_dir, images, opset,
                        full_integer_activations=full_integer_activations,
                        input_size=(preprocessing.height, preprocessing.width))
    if calib_paths and CALIBRATED & set(names):
        ctx.calibration_nchw = calibration_arrays(calib_paths, preprocessing)
        ctx.calibration_labels = calibration_labels(calib_paths, calibration_dir, labels, label_map)
    targets = int8_targets(budgets)
    ctx.int8_targets, ctx.precision_search = targets, precision_search
    described = source.describe()
    if source.local:
        described["path"] = relative_path(source.location, project_dir)

    context_dir = work_dir / "context"
    save_context(ctx, context_dir)

    def step(name_: str) -> StageResult:
        return run_stage(name_, context_dir, progress=progress) if isolate else run_stage_in_process(name_, ctx)

    records: dict[str, dict[str, Any]] = {}
    stages: list[dict[str, Any]] = []
    manifest = {
        "model": name,
        "source": described,
        "labels": labels,
        "preprocessing": preprocessing.to_dict(),
        **({"input_size": [preprocessing.height, preprocessing.width]} if resized else {}),
        "variants": [],
        "stages": stages,
        "export_seconds": None,
        "project_dir": relative_path(project_dir, out_dir),
        "sample_images": [relative_path(p, project_dir) for p in images] or SAMPLE_GENERATED,
        "calibration": {
            "path": relative_path(calibration_dir, project_dir) if calibration_dir else None,
            "images": [str(p.relative_to(calibration_dir)) for p in calib_paths],
            "sha256": calib_sha,
        },
        "edgeport_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    export_start = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        recipe = spec.recipe + (f"/{full_integer_activations}" if spec.name in TFLITE_CALIBRATED else "")
        if spec.name in SEARCHED:  # what the search aims at decides the file
            recipe += f"/search={json.dumps(targets[spec.name], sort_keys=True) if precision_search else 'off'}"
        if resized:  # the input size decides every file
            recipe += f"/input={preprocessing.height}x{preprocessing.width}"
        if spec.name in CALIBRATED and preprocessing.decode != "exact":  # the calibration's pixels
            recipe += f"/decode={preprocessing.decode}"
        key = _inputs_key(f"{spec.name}@{recipe}", described, opset,
                          calib_sha if spec.name in CALIBRATED else None,
                          records[spec.requires].get("inputs_key") if spec.requires else None)
        record = {"name": spec.name, "runtime": spec.runtime, "precision": spec.precision,
                  "path": spec.filename, "status": "ok", "error": None, "seconds": None, "inputs_key": key}
        records[spec.name] = record
        log(f"[{name}] ({i}/{len(specs)}) {spec.name}: {spec.description}")
        if spec.requires and records[spec.requires]["status"] != "ok":
            record.update(status="failed", error=f"needs {spec.requires}, which failed")
            log(f"[{name}]   skipped: {record['error']}")
            continue
        backend = cannot_make(spec.runtime)
        if backend:  # named, but this installation cannot make it: say how to install it, make the others
            record.update(status="failed", error=f"{spec.name} {backend}")
            log(f"[{name}]   failed: {record['error']}")
            continue
        reused, why = _reusable(previous.get(spec.name), key, out_dir / spec.filename)
        if reused:
            record.update({k: v for k, v in previous[spec.name].items() if k not in ("seconds", "peak_rss_mb")},
                          reused=True)
            log(f"[{name}]   up to date: {spec.filename} (sha256 matches the manifest; --force re-exports)")
            continue
        if why:
            record["note"] = why
            log(f"[{name}]   {why}")
        if spec.name in CALIBRATED and not calib_paths:
            record.update(status="failed", error=f"{spec.name} is calibrated on real images, and this model has "
                          "none: set calibration = \"DIR\" on the model in the config, or pass --calibration DIR "
                          "(training images, not evaluation images)")
            log(f"[{name}]   failed: {record['error']}")
            continue
        stage = step(spec.name)
        stages.append(stage.to_dict())
        record["seconds"] = stages[-1]["seconds"]
        record["peak_rss_mb"] = stages[-1]["peak_rss_mb"]
        if stage.error:
            record.update(status="failed", error=stage.error)
            log(f"[{name}]   FAILED: {stage.error.splitlines()[0]} (traceback: {work_dir / (spec.name + '.error.log')})")
        else:
            if stage.settings:
                record["settings"] = stage.settings
            if spec.runtime == "tflite":
                record["io"] = tflite_io_details(str(out_dir / spec.filename))
            if spec.runtime == "onnxruntime":  # a dynamic batch is run at two sizes, not assumed
                try:
                    record.update(ensure_any_batch_or_pin(out_dir / spec.filename, spec.precision))
                except BatchCheckError as exc:
                    record.update(status="failed", error=f"{spec.name}: {exc}")
                if record.get("batch_note"):
                    log(f"[{name}]   {spec.filename} {record['batch_note']}")
            record["sha256"] = artifact_sha256(out_dir / spec.filename)
            log(f"[{name}]   wrote {spec.filename} in {record['seconds']:.1f} s, "
                f"peak {stage.peak_rss_bytes / 2**30:.2f} GiB")
        manifest.update(variants=list(records.values()), export_seconds=round(time.perf_counter() - export_start, 2))
        _write_manifest(out_dir, manifest, project_dir)  # after every step: a killed run keeps what it finished

    manifest.update(variants=list(records.values()), export_seconds=round(time.perf_counter() - export_start, 2))
    manifest = _write_manifest(out_dir, manifest, project_dir)
    if all(r["status"] == "ok" for r in records.values()):
        shutil.rmtree(work_dir, ignore_errors=True)  # keep logs only when something failed
    return ExportResult(out_dir, manifest)


def _inputs_key(variant: str, source: dict[str, Any], opset: int, calibration: list[str] | None,
                parent_key: str | None) -> str:
    """What a variant is made from: equal keys mean an existing artifact can be reused."""
    # A hub model is pinned by id and revision; its weights' sha256 is known only once they are
    # cached, so it stays out of the key (a rerun would otherwise redo everything once).
    weights = None if source.get("id") else source.get("weights_sha256")
    identity = {"variant": variant, "weights": weights, "id": source.get("id"),
                "revision": source.get("revision"), "opset": opset, "calibration": calibration,
                "parent": parent_key, "edgeport": __version__}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _previous_records(out_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        old = json.loads((out_dir / MANIFEST).read_text())
        return {v["name"]: v for v in old.get("variants", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no manifest, or an unreadable one: export everything


def _artifact_problem(path: Path, expected_sha256: str | None) -> str | None:
    """Return "missing", "changed" (its sha256 is not ``expected_sha256``, when given) or None."""
    if not path.exists():
        return "missing"
    if expected_sha256 is not None and artifact_sha256(path) != expected_sha256:
        return "changed"
    return None


def _reusable(previous: dict[str, Any] | None, key: str, path: Path) -> tuple[bool, str | None]:
    """(reuse?, why not, when the reason is worth telling)."""
    if not previous or previous.get("status") != "ok" or previous.get("inputs_key") != key:
        return False, None
    problem = _artifact_problem(path, previous.get("sha256", ""))
    if problem == "missing":
        return False, f"{path.name} is missing: exporting it again"
    if problem == "changed":
        return False, f"{path.name} no longer matches the sha256 in its manifest: exporting it again"
    return True, None


def _changed_since_export(out_dir: Path, record: dict[str, Any]) -> str | None:
    """An error when an artifact is missing or differs from what its manifest recorded."""
    path = out_dir / record["path"]
    problem = _artifact_problem(path, record.get("sha256") or None)
    if problem == "missing":
        return f"{path} is missing: run `edgeport export` again"
    if problem == "changed":
        return (f"{path} changed after export (its sha256 no longer matches manifest.json): "
                "run `edgeport export` again")
    return None


def _write_manifest(out_dir: Path, manifest: dict[str, Any], project_dir: Path) -> dict[str, Any]:
    """Write manifest.json, error texts scrubbed of absolute paths; return what was written."""
    portable = scrub(manifest, scrub_prefixes([out_dir, project_dir]))
    with atomic_path(out_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(portable, indent=2) + "\n")
    return portable


def reference_location(project_dir: Path, path: str) -> str:
    """The source folder the manifest names: under its project folder, else under the working folder.

    The second place serves an artifacts folder that was copied elsewhere and is validated
    from the project folder.
    """
    for candidate in (absolute_from(project_dir, path), absolute_from(Path.cwd(), path)):
        if candidate.is_dir():
            return str(candidate)
    raise FileNotFoundError(f"the model source {path!r} recorded in manifest.json is not in {project_dir} nor in "
                            "the working folder: run validate from the project folder, or export again")


def manifest_project_dir(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """The folder the manifest's source and image paths are relative to (older manifests: absolute paths)."""
    return absolute_from(out_dir, manifest.get("project_dir", "."))


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
    label_map: dict[str, str] | None = None,
    subgroups: SubgroupSpec | None = None,
) -> dict[str, Any]:
    """Validate every variant in ``out_dir``'s manifest on ``eval_dir``; write the reports.

    ``label_map`` maps evaluation folder names to labels (or "ignore"); ``subgroups`` says
    where the evaluation images' subgroups come from (per-subgroup figures and budgets).
    """
    needs = missing_message("export")
    if needs:  # every variant is judged against the PyTorch reference, run here
        raise ValueError(f"validating {out_dir} {needs}")
    manifest = read_manifest(out_dir)
    project_dir = manifest_project_dir(out_dir, manifest)
    labels = manifest["labels"]
    eval_set = scan_eval_set(eval_dir, labels, label_map)  # label mapping errors surface before any work
    shared = images_with_hashes([s.path for s in eval_set.samples],
                                set(manifest.get("calibration", {}).get("sha256", [])))
    if shared:
        raise ValueError(
            f"{len(shared)} evaluation image(s) in {eval_dir} were used to calibrate the int8 variants "
            f"(e.g. {shared[0].name}): evaluate on images disjoint from the calibration set"
        )
    multi_label = is_multi_label(out_dir / "config.json")
    if eval_set.multi_label and not multi_label:
        raise ValueError(f"{eval_dir} is a label CSV, which is for multi-label models; {manifest['model']} is not one "
                         "(its config's problem_type is not multi_label_classification): evaluate it on class folders")
    if multi_label and not eval_set.multi_label:  # class folders: each image has exactly its folder's label
        eval_set.multi_label = True
        eval_set.samples = [dataclasses.replace(s, label=-1, targets=(s.label,)) for s in eval_set.samples]
    preprocess = Preprocessing.from_file(out_dir / "preprocessor_config.json",
                                         decode=(manifest.get("preprocessing") or {}).get("decode", "exact"))
    inputs, y, paths = load_eval_arrays(eval_set, preprocess, progress=progress)
    if multi_label and subgroups is not None:
        log(f"[{manifest['model']}] subgroups are judged on single-label models only; left out for this multi-label one")
        subgroups = None
    assignment = assign(subgroups, paths, eval_set.root) if subgroups is not None else None
    src = manifest["source"]
    location = reference_location(project_dir, src["path"]) if src.get("path") else src["id"]
    reference = Variant("reference", "torch", "fp32", location, revision=src.get("revision"),
                        allow_pickle=bool(src.get("allow_pickle")))
    variants = [
        Variant(v["name"], v["runtime"], v["precision"], str(out_dir / v["path"]),
                error=v["error"] if v["status"] != "ok" else _changed_since_export(out_dir, v))
        for v in manifest["variants"]
    ]
    ref, results = validate(
        reference, variants, inputs, y, labels,
        lambda v: budget_for(v.name, v.precision, budgets), settings, progress=progress, subgroups=assignment,
    )
    _localize_onnx_failures(out_dir, manifest, results, inputs)
    decode_check = _compare_decodes(out_dir, manifest, eval_set, preprocess, inputs, settings) \
        if preprocess.decode == "draft" else None
    report = build_report(
        model=manifest["model"],
        source=src,
        labels=labels,
        eval_set={
            "path": relative_path(eval_dir, project_dir),
            "images": int(len(y)),
            "skipped": len(eval_set.skipped),
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in eval_set.skipped],
            "folders": eval_set.folder_to_label,
            "ignored_folders": eval_set.ignored_folders,
            **({"multi_label": True, "threshold": MULTI_LABEL_THRESHOLD} if multi_label else {}),
        },
        reference=ref,
        variants=results,
        settings={"threads": settings.threads, "batch": settings.batch, "warmup": settings.warmup,
                  "latency_runs": settings.runs, "preprocessing": manifest["preprocessing"]},
        edgeport_version=__version__,
    )
    if decode_check is not None:
        report["decode"] = decode_check
    if assignment is not None:
        report["subgroups"] = assignment.summary(subgroups)
        if subgroups.manifest:
            report["subgroups"]["spec"]["manifest"] = relative_path(subgroups.manifest, project_dir)
    exported = {v["name"]: v for v in manifest["variants"]}
    report["reference"]["path"] = src.get("path") or src["id"]
    for v in report["variants"]:
        v["path"] = exported[v["name"]]["path"]  # relative to the artifacts folder
        settings = exported[v["name"]].get("settings") or {}
        if settings.get("activations"):  # the full-integer files' activation width, for the reader of the report
            v["activations"] = settings["activations"]
        search = settings.get("precision_search")
        if search:  # what the precision search raised, measured on held-out calibration images
            v["precision_search"] = {k: search[k] for k in ("raised_to", "raised", "candidates", "holdout_images",
                                                            "passed_on_holdout", "seconds", "tool") if k in search}
    distilled = out_dir / DISTILL_REPORT
    if distilled.is_file():  # a student made by `edgeport distill`: judged against its teacher as well
        report["distillation"] = distillation_summary(json.loads(distilled.read_text()), budgets.get("distill"))
        if report["distillation"]["failures"]:  # lost too much against its teacher: the model fails
            report["passed"] = False
    report = scrub(report, scrub_prefixes([out_dir, project_dir]))  # paths inside error texts
    json_path, md_path = write_reports(report, out_dir)
    _print_summary(report, json_path, md_path)
    bundle = write_mobile_bundle(out_dir, manifest, report)
    if bundle:
        log(f"[{report['model']}] mobile bundle: {bundle}/ (model.json, labels.txt, SHA256SUMS, README.md)")
    return report


def _compare_decodes(out_dir: Path, manifest: dict[str, Any], eval_set: EvalSet, pre: Preprocessing, inputs: np.ndarray,
                     settings: RunSettings) -> dict[str, Any]:
    """What ``decode = "draft"`` changes (validation.decode_check), judged with onnx-fp32."""
    from edgeport.validation.decode_check import compare_decodes

    fp32 = next((v for v in manifest["variants"] if v["name"] == "onnx-fp32" and v["status"] == "ok"), None)
    if fp32 is None:
        return {"mode": "draft", "error": "no onnx-fp32 variant to compare with: add it to the model's variants"}
    try:
        return compare_decodes(eval_set, pre, inputs, "onnx-fp32", "onnxruntime", out_dir / fp32["path"],
                               threads=settings.threads)
    except Exception as exc:  # a measurement for the reader must not cost the report
        return {"mode": "draft", "error": f"{type(exc).__name__}: {exc}"}


def _localize_onnx_failures(out_dir: Path, manifest: dict[str, Any], results: list, inputs: np.ndarray) -> None:
    """For each ONNX variant that ran but missed its budget, find where it leaves onnx-fp32."""
    from edgeport.validation.localize import localize_divergence

    fp32 = next((v for v in manifest["variants"] if v["name"] == "onnx-fp32" and v["status"] == "ok"), None)
    for result in results:
        if result.runtime != "onnxruntime" or result.passed or result.error or fp32 is None \
                or result.name == "onnx-fp32":
            continue
        log(f"[{manifest['model']}]   {result.name} missed its budget: comparing its intermediate tensors "
            "with onnx-fp32")
        try:
            result.localization = localize_divergence(out_dir / fp32["path"], result.path, inputs)
        except Exception as exc:  # a diagnosis must not cost the report
            result.localization = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        first = result.localization["first_divergent"]
        if first:
            log(f"[{manifest['model']}]   first divergent node: {first['node']} ({first['op_type']}), "
                f"relative error {first['relative_error']:.3f} > {result.localization['tolerance']}")


def _print_summary(report: dict[str, Any], json_path: Path, md_path: Path) -> None:
    ref = report["reference"]
    log(f"[{report['model']}] reference accuracy {ref['accuracy'] * 100:.2f}% on "
        f"{report['eval_set']['images']} images ({report['eval_set']['skipped']} skipped)")
    for v in report["variants"]:
        status = {"passed": "pass", "failed": "FAIL", "not validated": "n/v "}[status_of(v)]
        acc = "–" if v["accuracy"] is None else f"{v['accuracy'] * 100:.2f}%"
        diff = "–" if v["max_abs_diff"] is None else f"{v['max_abs_diff']:.2e}"
        p50 = "–" if not v["latency_ms"] else f"{v['latency_ms']['p50']:.2f} ms"
        log(f"[{report['model']}]   {status}  {v['name']:<18} acc {acc:>8}  max|Δ| {diff:>9}  p50 {p50}")
    for line in failure_lines(report):
        log(f"FAIL {line}")
    for line in not_validated_lines(report):
        log(f"NOTE {line}")
    log(f"[{report['model']}] report: {md_path} and {json_path.name}")


__all__ = ["export_model", "validate_export", "read_manifest", "sample_images", "VARIANTS"]
