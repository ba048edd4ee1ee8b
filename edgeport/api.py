"""edgeport's Python API: what the command line does, as calls that return objects.

    import edgeport

    result = edgeport.export("models/gender-vit", out="artifacts/gender-vit",
                             calibration="data/calib/gender")
    report = edgeport.validate("artifacts/gender-vit", eval="data/eval/gender")
    print(report.passed, report.failures)
    verdict = edgeport.gate("artifacts/gender-vit")
    classifier = edgeport.load("artifacts/gender-vit")        # the fastest variant that passed
    classifier("face.jpg")                                    # [{"label": "female", "score": 0.93}, ...]
    edgeport.init("models/my-model")                          # a starter ./edgeport.toml
    student = edgeport.distill("gender-vit", images="faces/", out="models/gender-student")

`edgeport export`, `validate` and `gate` are built on these functions (``edgeport.cli``); the
config file is optional everywhere: ``config=None`` reads ``./edgeport.toml`` when there is one,
else the defaults.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeport.config import Config, ConfigError, ModelEntry, load_config

if TYPE_CHECKING:
    from edgeport.classifier import Classifier
    from edgeport.distillation.run import DistillResult
    from edgeport.pipeline import ExportResult
    from edgeport.validation.subgroups import SubgroupSpec

PathLike = str | Path


def export(model: PathLike, *, out: PathLike | None = None, variants: Sequence[str] | None = None,
           calibration: PathLike | None = None, images: PathLike | None = None, revision: str | None = None,
           config: PathLike | Config | None = None, force: bool = False,
           full_integer_activations: str | None = None, precision_search: bool | None = None,
           allow_pickle: bool = False, progress: bool = True,
           input_size: tuple[int, int] | None = None, decode: str | None = None) -> ExportResult:
    """Convert ``model`` into its variants under ``out`` and write ``manifest.json``.

    ``model``: a model name from the config, a local Hugging Face model folder, or a hub id (with
    ``revision``, a commit to pin). ``variants``: default the model's from the config, else the
    config's ``[settings] variants``, else the defaults the installed backends can make
    (``edgeport backends``). ``calibration``: real images
    (any depth, disjoint from the evaluation set) for the int8 variants. A variant that fails is
    recorded as failed (``result.failed``) and the others are still made. ``input_size`` (H, W):
    for a model whose image processor does not fix one (default: the model's from the config).
    ``decode``: "exact" or "draft", how its images are decoded (default: the model's from the config,
    else "exact"; see docs/configuration.md).
    """
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    cfg = _config(config)
    name = str(model)
    entry = cfg.model(name)
    if entry is None:
        entry = ModelEntry(name=Path(name.rstrip("/")).name, source=name, base_dir=Path.cwd(), revision=revision,
                           variants=list(cfg.variants))
    elif revision:
        entry = dataclasses.replace(entry, revision=revision)
    distill_first(entry, cfg, progress=progress)  # a [models.distill] student is made before its export
    source = resolve_source(entry.source, entry.revision, entry.base_dir, allow_pickle=allow_pickle or entry.allow_pickle)
    calibration_dir = Path(calibration) if calibration else entry.calibration_dir
    images_dir = Path(images) if images else (None if calibration_dir else entry.eval_dir)
    return export_model(entry.name, source, Path(out) if out else cfg.artifacts_dir / entry.name,
                        variants=list(variants) if variants else entry.variants, images_dir=images_dir,
                        calibration_dir=calibration_dir, eval_dir=entry.eval_dir, opset=cfg.opset, force=force,
                        full_integer_activations=full_integer_activations or entry.full_integer_activations,
                        project_dir=entry.base_dir, progress=progress, budgets=cfg.budgets_for(entry),
                        label_map=entry.label_map,
                        precision_search=entry.precision_search if precision_search is None else precision_search,
                        input_size=tuple(input_size) if input_size else entry.input_size,
                        decode=decode or entry.decode)


@dataclass
class Report:
    """A validation report: ``report.json`` as an object."""

    data: dict[str, Any]
    folder: Path

    @property
    def model(self) -> str:
        return self.data["model"]

    @property
    def passed(self) -> bool:
        """Every variant validated here within its budget (and not too many unreadable images, when
        returned by ``validate``)."""
        return bool(self.data["passed"]) and not self.data.get("too_many_skipped")

    @property
    def variants(self) -> list[dict[str, Any]]:
        """One dict per variant: name, runtime, status, accuracy, agreement, max_abs_diff, latency_ms, ..."""
        return self.data["variants"]

    @property
    def failures(self) -> dict[str, list[str]]:
        """Variant name -> why it failed (missed budgets, or the error), for every failed variant."""
        from edgeport.validation.status import status_of

        return {v["name"]: ([f["message"] for f in v.get("failures") or []] or ([v["error"]] if v.get("error") else []))
                for v in self.variants if status_of(v) == "failed"}

    @property
    def markdown(self) -> str:
        """The report as Markdown (what ``report.md`` holds)."""
        from edgeport.validation.report import render_markdown

        return render_markdown(self.data)

    @classmethod
    def read(cls, folder: PathLike) -> "Report":
        """The report of an export folder already validated (its ``report.json``)."""
        folder = Path(folder)
        return cls(load_report(folder), folder if folder.is_dir() else folder.parent)


def validate(out: PathLike, *, eval: PathLike, config: PathLike | Config | None = None,  # noqa: A002
             latency_runs: int | None = None, label_map: dict[str, str] | None = None,
             subgroups: SubgroupSpec | None | str = "config", progress: bool = True) -> Report:
    """Run every variant in the export folder ``out`` and the PyTorch reference on the images of
    ``eval`` (class folders), judge them against the budgets, and write ``report.json``,
    ``report.md``, ``report.html`` and the mobile bundle into ``out``.

    ``label_map``: evaluation folder -> label (or "ignore"), on top of the config's.
    ``subgroups``: where the images' subgroups come from (default "config": the model's
    ``[models.subgroups]``; None: no subgroups)."""
    from edgeport.pipeline import read_manifest, validate_export
    from edgeport.validation.gate import too_many_skipped

    cfg = _config(config)
    manifest = read_manifest(Path(out))
    settings = cfg.run
    if latency_runs:
        settings = dataclasses.replace(settings, runs=latency_runs)
    entry = cfg.model(manifest["model"])
    labels = {**(entry.label_map if entry else {}), **(label_map or {})}
    if subgroups == "config":
        subgroups = entry.subgroups if entry is not None else None
    data = validate_export(Path(out), Path(eval), cfg.budgets_for(entry), settings, progress=progress,
                           label_map=labels, subgroups=subgroups)
    skipped = too_many_skipped(data, cfg.gate)
    if skipped:
        data = {**data, "too_many_skipped": skipped}
    return Report(data, Path(out))


@dataclass
class ModelVerdict:
    """The gate's verdict on one model's report."""

    model: str
    report: Path
    reasons: list[str]  # why it fails (empty: it passes)
    notes: list[str]  # variants not validated on this machine (Core ML off macOS), which count neither way
    variants: int
    against_baseline: bool

    @property
    def passed(self) -> bool:
        return not self.reasons


@dataclass
class GateResult:
    """The gate over a set of reports: one verdict per model, and configured models with no report."""

    models: list[ModelVerdict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # configured models that no report covers

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.models) and not self.missing


def gate(reports: PathLike | Sequence[PathLike] | None = None, *, baseline: PathLike | None = None,
         config: PathLike | Config | None = None, max_accuracy_regression: float | None = None,
         max_agreement_regression: float | None = None, expect_config: bool | None = None) -> GateResult:
    """Judge reports: every budget met, not too many unreadable evaluation images, and (with
    ``baseline``: a report, or a folder of them by model) no regression beyond the config's margins.

    ``reports``: report.json files, export folders, or folders searched for them (default: the
    config's models under its artifacts folder). ``expect_config``: also fail each configured model
    that no report covers (default: when a folder was searched, as for CI shards).
    """
    from edgeport.shards import duplicate_models
    from edgeport.validation.gate import gate as judge
    from edgeport.validation.report import not_validated_lines

    cfg = _config(config)
    overrides = {k: v for k, v in (("max_accuracy_regression", max_accuracy_regression),
                                   ("max_agreement_regression", max_agreement_regression)) if v is not None}
    settings = dataclasses.replace(cfg.gate, **overrides)
    if reports is not None:
        named = [Path(reports)] if isinstance(reports, (str, Path)) else [Path(r) for r in reports]
        paths, searched = _report_paths(named)
    else:
        paths, searched = [cfg.artifacts_dir / m.name for m in cfg.models], False
    if not paths:
        raise ConfigError(f"nothing to gate: name a REPORT, or configure [[models]] in {cfg.where}")
    loaded: dict[Path, tuple[Path, dict]] = {}  # the same file named twice is gated once
    for path in paths:
        file = path / "report.json" if path.is_dir() else path
        if file.resolve() not in loaded:
            loaded[file.resolve()] = (file, load_report(path))
    duplicates = duplicate_models((r["model"], file) for file, r in loaded.values())
    if duplicates:  # one verdict per model: which report would it be about?
        raise ValueError("the same model in two reports (did two shards export it?): " + "; ".join(duplicates))
    result = GateResult()
    for file, report in loaded.values():
        base = load_report(_baseline_for(Path(baseline), report["model"])) if baseline else None
        result.models.append(ModelVerdict(report["model"], file, judge(report, base, settings),
                                          not_validated_lines(report), len(report["variants"]), base is not None))
    # A shard that crashed before writing its reports must not pass by absence.
    if searched if expect_config is None else expect_config:
        covered = {m.model for m in result.models}
        result.missing = [m.name for m in cfg.models if m.name not in covered]
    return result


def init(model: str = "models/my-model", folder: PathLike = ".", *, name: str | None = None,
         revision: str | None = None, eval: str = "data/eval", calibration: str = "data/calib",  # noqa: A002
         force: bool = False) -> Path:
    """Write a starter ``edgeport.toml`` into ``folder`` for ``model`` (a local model folder, or a hub
    id with ``revision``), with its evaluation and calibration folders and the default budgets,
    commented; returns its path. Refuses to replace an existing file unless ``force``."""
    from edgeport.starter import write_starter_config

    return write_starter_config(model, folder, force=force, name=name, revision=revision, eval_dir=eval,
                                calibration_dir=calibration)


def distill(teacher: str, *, images: PathLike, out: PathLike | None = None, student: str | None = None,
            input_size: int | None = None, eval: PathLike | None = None,  # noqa: A002
            config: PathLike | Config | None = None, revision: str | None = None, allow_pickle: bool = False,
            max_steps: int | None = None, minutes: float | None = None, seed: int = 0,
            cache: PathLike | None = None, latency_variants: Sequence[str] | None = None, force: bool = False,
            progress: bool = True) -> DistillResult:
    """Distill ``teacher`` into an edge-sized student, written to ``out`` as a Hugging Face model
    folder (config.json with the teacher's labels, model.safetensors, preprocessor_config.json)
    with ``distill.json`` and ``distill.md`` beside it.

    ``teacher``: what ``export`` accepts (a config model name, a local folder, a hub id with
    ``revision``). ``images``: images of the deployment domain, any depth; when they sit in
    folders named like the teacher's labels, the labels are learned too. ``student``: a preset
    (``edgeport.distillation.students.PRESETS``) or a transformers ``config.json`` (default: the
    largest preset with at most a quarter of the teacher's parameters), at ``input_size`` (default:
    the teacher's). ``eval``: class folders to compare teacher and student on (default: the
    teacher's eval from the config), judged by the config's ``[budgets.distill]``.
    ``max_steps``, ``minutes``: the training budget (default 4000 steps, 15 minutes). The
    teacher's outputs are cached by content (``cache``, default ``~/.cache/edgeport``); a killed
    run resumes from its last checkpoint; a rerun with the same inputs and settings reuses the
    student unless ``force``. ``latency_variants``: what both are exported to and timed on
    (default onnx-fp32 and tflite-fp32 where installed; ``[]`` to skip).
    """
    cfg = _config(config)
    return _distill(cfg, str(teacher), images=Path(images), out=Path(out) if out else None, student=student,
                    input_size=input_size, eval_dir=Path(eval) if eval else None, revision=revision,
                    allow_pickle=allow_pickle, max_steps=max_steps, minutes=minutes, seed=seed,
                    cache=Path(cache) if cache else None, latency_variants=latency_variants, force=force,
                    progress=progress)


def _distill(cfg: Config, teacher: str, *, images: Path, out: Path | None, student: str | None,
             input_size: int | None, eval_dir: Path | None, revision: str | None = None, allow_pickle: bool = False,
             max_steps: int | None = None, minutes: float | None = None, seed: int = 0, cache: Path | None = None,
             latency_variants: Sequence[str] | None = None, force: bool = False, progress: bool = True,
             judged_as: ModelEntry | None = None, base_dir: Path | None = None) -> DistillResult:
    """``distill`` for a teacher named as on the command line (a config model, a folder relative to
    ``base_dir``, a hub id); ``judged_as``: the student's own config entry, whose evaluation set,
    subgroups and ``[budgets.distill]`` judge it (default: the teacher's)."""
    from edgeport.distillation.run import DEFAULT_LATENCY_VARIANTS, TrainSettings, distill_model
    from edgeport.model_source import resolve_source
    from edgeport.variants import default_variants

    entry = cfg.model(teacher)
    if entry is None:
        entry = ModelEntry(name=Path(teacher.rstrip("/")).name, source=teacher, base_dir=base_dir or Path.cwd(),
                           revision=revision)
    elif revision:
        entry = dataclasses.replace(entry, revision=revision)
    source = resolve_source(entry.source, entry.revision, entry.base_dir,
                            allow_pickle=allow_pickle or entry.allow_pickle)
    defaults = TrainSettings()
    settings = dataclasses.replace(defaults, seed=seed,
                                   max_steps=defaults.max_steps if max_steps is None else int(max_steps),
                                   minutes=defaults.minutes if minutes is None else float(minutes))
    if latency_variants is None:  # those this installation can make
        latency_variants = [v for v in DEFAULT_LATENCY_VARIANTS if v in default_variants()]
    judge = judged_as or entry
    return distill_model(source, entry.name, images, out or cfg.artifacts_dir / f"{entry.name}-student",
                         student=student, input_size=input_size, eval_dir=eval_dir or judge.eval_dir,
                         subgroups=judge.subgroups, budget=cfg.budgets_for(judge).get("distill"), settings=settings,
                         cache_dir=cache, latency_variants=tuple(latency_variants), threads=cfg.run.threads,
                         label_map=judge.label_map, force=force, progress=progress)


def distill_first(entry: ModelEntry, cfg: Config, *, progress: bool = True) -> DistillResult | None:
    """For a config model with ``[models.distill]``: distill its teacher into its ``source`` folder
    (reused while the inputs and settings are unchanged), before it is exported. None otherwise."""
    spec = entry.distill
    if spec is None:
        return None
    out = entry.base_dir / entry.source
    return _distill(cfg, spec.teacher, images=spec.images, out=out, student=spec.student,
                    input_size=spec.input_size, eval_dir=None, revision=spec.revision, max_steps=spec.max_steps,
                    minutes=spec.minutes, seed=spec.seed, latency_variants=spec.latency_variants, progress=progress,
                    judged_as=entry, base_dir=entry.base_dir)


def load(folder: PathLike, variant: str | None = None, *, threads: int | None = None) -> Classifier:
    """A classifier over the validated variant ``variant`` of the export folder (default: the
    fastest that passed validation, as ``edgeport serve`` chooses), taking a PIL image, a path or
    an array and answering as the Hugging Face pipeline does (``[{"label", "score"}]``)."""
    from edgeport.classifier import Classifier

    return Classifier.open(folder, variant, threads=threads)


def load_report(path: PathLike) -> dict[str, Any]:
    """``report.json`` of ``path`` (the file, or the folder holding it)."""
    path = Path(path)
    path = path / "report.json" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"report not found: {path} (run `edgeport validate` or `make export-all` first)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not a readable report.json: {exc}") from None


def _config(config: PathLike | Config | None) -> Config:
    return config if isinstance(config, Config) else load_config(config)


def _report_paths(named: list[Path]) -> tuple[list[Path], bool]:
    """The report.json files or folders to gate, and whether a folder was searched for them."""
    from edgeport.shards import find_reports

    paths, searched = [], False
    for path in named:
        if path.is_dir() and not (path / "report.json").is_file():
            found = find_reports(path)
            if not found:
                raise FileNotFoundError(f"no report.json in {path} or below it (did the export write its "
                                        "reports, and did the artifacts download there?)")
            paths += found
            searched = True
        else:
            paths.append(path)
    return paths, searched


def _baseline_for(baseline: Path, model: str) -> Path:
    if baseline.is_dir() and not (baseline / "report.json").exists():
        return baseline / model / "report.json"
    return baseline
