"""The one configuration file a user edits: models, variants, budgets, run settings."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgeport.variants import FULL_INTEGER_ACTIVATIONS, VARIANTS, default_variants
from edgeport.validation.budgets import Budget, BudgetError
from edgeport.validation.gate import GateSettings
from edgeport.validation.harness import RunSettings
from edgeport.validation.preprocess import DECODE_MODES
from edgeport.validation.subgroups import SubgroupError, SubgroupSpec

CONFIG_NAME = "edgeport.toml"  # what commands read from the working folder when --config is not given
DEFAULT_BUDGETS = {
    "fp32": Budget(min_agreement=1.0, max_abs_diff=1e-4),
    "fp16": Budget(min_agreement=0.995, max_accuracy_drop=0.5, max_subgroup_drop=1.5),
    "int8": Budget(min_agreement=0.97, max_accuracy_drop=1.0, max_subgroup_drop=3.0),
    # a distilled student against its teacher (edgeport distill), on the evaluation set; no
    # min_agreement: a student that learns the labels too disagrees wherever the teacher is wrong
    # (docs/decisions/distilling-defaults.md)
    "distill": Budget(max_accuracy_drop=2.0, max_subgroup_drop=4.0),
}


class ConfigError(ValueError):
    """The configuration file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class DistillSpec:
    """``[models.distill]``: the model's ``source`` folder is made by distilling ``teacher`` first
    (``edgeport distill``; once, reused while its inputs and settings are unchanged)."""

    teacher: str  # a model name of this config, a local folder (relative to the config), or a hub id
    images: Path
    student: str | None = None  # a preset, or a config.json (relative to the config); None: sized from the teacher
    input_size: int | None = None
    revision: str | None = None  # the teacher's, for a hub id
    max_steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    latency_variants: tuple[str, ...] | None = None  # None: onnx-fp32 and tflite-fp32, where installed


@dataclass
class ModelEntry:
    name: str
    source: str  # a directory (relative to base_dir) or a Hugging Face Hub id
    base_dir: Path = field(default_factory=Path.cwd)
    revision: str | None = None
    eval_dir: Path | None = None
    calibration_dir: Path | None = None
    variants: list[str] = field(default_factory=default_variants)  # what the installed extras can make
    budgets: dict[str, Budget] = field(default_factory=dict)
    allow_pickle: bool = False  # accept pickle-only weights (can run code when loaded)
    label_map: dict[str, str] = field(default_factory=dict)  # eval folder -> label, or "ignore"
    full_integer_activations: str = "int8"  # tflite-int8/-io activations: "int8" or "int16" (16x8)
    precision_search: bool = True  # raise sensitive layers until the int8 budgets are met (held-out images)
    subgroups: SubgroupSpec | None = None  # where the evaluation images' subgroups come from ([models.subgroups])
    input_size: tuple[int, int] | None = None  # (H, W) for a processor that does not fix one (input_size = [H, W])
    distill: DistillSpec | None = None  # made by distilling a teacher first ([models.distill])
    decode: str = "exact"  # or "draft": JPEGs decoded at a reduced DCT scale (validation.preprocess.DECODE_MODES)


@dataclass
class Config:
    path: Path | None
    models: list[ModelEntry] = field(default_factory=list)
    budgets: dict[str, Budget] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    run: RunSettings = RunSettings()
    artifacts_dir: Path = field(default_factory=lambda: Path.cwd() / "artifacts")
    opset: int = 20
    gate: GateSettings = GateSettings()
    # [settings] variants: every [[models]] entry's default, and the list for a model named on the
    # command line that the config does not hold; not named: what the installed extras can make
    variants: list[str] = field(default_factory=default_variants)

    def model(self, name: str) -> ModelEntry | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def base_dir(self) -> Path:
        """The folder the config's relative paths start from (the working folder without a file)."""
        return self.path.resolve().parent if self.path else Path.cwd()

    @property
    def where(self) -> str:
        """The config file, for messages."""
        return str(self.path) if self.path else f"./{CONFIG_NAME} (there is none here: `edgeport init` writes one)"

    def budgets_for(self, model: ModelEntry | None) -> dict[str, Budget]:
        """Global budgets with the model's overrides applied key by key."""
        merged = dict(self.budgets)
        for key, budget in (model.budgets if model else {}).items():
            merged[key] = merged[key].merged(budget) if key in merged else budget
        return merged


def load_config(path: str | Path | None = None) -> Config:
    """Read ``path``; without one, ``edgeport.toml`` in the working folder, or the defaults (no
    models, artifacts under ./artifacts) where there is none, so that commands given a model folder
    work from any folder."""
    if path is None:
        path = Path.cwd() / CONFIG_NAME
        if not path.is_file():
            return Config(path=None)
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base = path.resolve().parent
    settings = data.get("settings", {})
    _check_keys(settings, {"artifacts", "opset", "threads", "batch", "warmup", "latency_runs", "variants",
                           "max_skipped_fraction"}, f"{path} [settings]")
    gate_table = data.get("gate", {})
    _check_keys(gate_table, {"max_accuracy_regression", "max_agreement_regression"}, f"{path} [gate]")
    # not named: the defaults this installation can make (a variant named whose backend is missing
    # fails at export with the install command, and the others are still made)
    default_list = _variants(settings["variants"], f"{path} [settings]") if "variants" in settings \
        else default_variants()
    budgets = dict(DEFAULT_BUDGETS)
    budgets.update(_budgets(data.get("budgets", {}), f"{path} [budgets]"))
    cfg = Config(
        path=path,
        budgets=budgets,
        run=RunSettings(
            threads=int(settings.get("threads", 2)),
            batch=int(settings.get("batch", 8)),
            warmup=int(settings.get("warmup", 3)),
            runs=int(settings.get("latency_runs", 20)),
        ),
        artifacts_dir=base / settings.get("artifacts", "artifacts"),
        opset=int(settings.get("opset", 20)),
        variants=list(default_list),
        gate=GateSettings(
            max_accuracy_regression=float(gate_table.get("max_accuracy_regression", 0.5)),
            max_agreement_regression=float(gate_table.get("max_agreement_regression", 0.5)),
            max_skipped_fraction=float(settings.get("max_skipped_fraction", 0.02)),
        ),
    )
    names = set()
    for i, raw in enumerate(data.get("models", [])):
        where = f"{path} [[models]] #{i + 1}"
        _check_keys(raw, {"name", "source", "revision", "eval", "calibration", "variants", "budgets",
                          "allow_pickle", "label_map", "full_integer_activations", "precision_search", "subgroups",
                          "input_size", "distill", "decode"}, where)
        for key in ("name", "source"):
            if not raw.get(key):
                raise ConfigError(f"{where}: '{key}' is required")
        if raw["name"] in names:
            raise ConfigError(f"{where}: duplicate model name {raw['name']!r}")
        names.add(raw["name"])
        cfg.models.append(ModelEntry(
            name=raw["name"],
            source=raw["source"],
            base_dir=base,
            revision=raw.get("revision") or None,
            eval_dir=base / raw["eval"] if raw.get("eval") else None,
            calibration_dir=base / raw["calibration"] if raw.get("calibration") else None,
            variants=_variants(raw.get("variants", default_list), where),
            budgets=_budgets(raw.get("budgets", {}), f"{where} budgets"),
            allow_pickle=bool(raw.get("allow_pickle", False)),
            label_map={str(k): str(v) for k, v in raw.get("label_map", {}).items()},
            full_integer_activations=_activations(raw.get("full_integer_activations", "int8"), where),
            precision_search=_boolean(raw.get("precision_search", True), "precision_search", where),
            subgroups=_subgroups(raw.get("subgroups"), f"{where} subgroups", base),
            input_size=parse_input_size(raw["input_size"], where) if "input_size" in raw else None,
            distill=_distill(raw.get("distill"), f"{where} distill", base),
            decode=_decode(raw.get("decode", "exact"), where),
        ))
    return cfg


def parse_input_size(value: object, where: str) -> tuple[int, int]:
    """``[H, W]`` (the config) or ``"HxW"`` (the command line) as (H, W); a ConfigError otherwise."""
    parts = value.lower().split("x") if isinstance(value, str) else value
    try:
        height, width = (int(v) for v in parts)  # type: ignore[union-attr]
        if height > 0 and width > 0 and all(not isinstance(v, float) or v.is_integer() for v in parts):
            return height, width
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{where}: input_size must be two positive integers, [H, W] in the config or HxW on the "
                      f"command line (for example [224, 224] or 224x224), not {value!r}")


def _activations(value: object, where: str) -> str:
    if value not in FULL_INTEGER_ACTIVATIONS:
        raise ConfigError(f"{where}: full_integer_activations must be one of "
                          f"{', '.join(repr(v) for v in FULL_INTEGER_ACTIVATIONS)}, not {value!r}")
    return str(value)


def _decode(value: object, where: str) -> str:
    if value not in DECODE_MODES:
        raise ConfigError(f"{where}: decode must be one of {', '.join(repr(v) for v in DECODE_MODES)}, not {value!r} "
                          "(\"draft\": JPEGs decoded at a reduced scale, faster to serve; see docs/configuration.md)")
    return str(value)


def _subgroups(table: object, where: str, base: Path) -> SubgroupSpec | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table ([models.subgroups]), not {table!r}")
    try:
        return SubgroupSpec.from_dict(table, where=where, base_dir=base)
    except SubgroupError as exc:
        raise ConfigError(str(exc)) from None


def _distill(table: object, where: str, base: Path) -> DistillSpec | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table ([models.distill]), not {table!r}")
    _check_keys(table, {"teacher", "images", "student", "input_size", "revision", "max_steps", "minutes", "seed",
                        "latency_variants"}, where)
    for key in ("teacher", "images"):
        if not table.get(key):
            raise ConfigError(f"{where}: '{key}' is required")
    student = table.get("student")
    if student and (student.endswith(".json") or "/" in student):  # a config file, relative to this config
        student = str(base / student)
    try:
        return DistillSpec(teacher=str(table["teacher"]), images=base / table["images"], student=student or None,
                           input_size=int(table["input_size"]) if "input_size" in table else None,
                           revision=table.get("revision") or None,
                           max_steps=int(table["max_steps"]) if "max_steps" in table else None,
                           minutes=float(table["minutes"]) if "minutes" in table else None,
                           seed=int(table.get("seed", 0)),
                           latency_variants=tuple(_variants(table["latency_variants"], where))
                           if "latency_variants" in table else None)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _boolean(value: object, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _check_keys(table: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


def _variants(names: list[str], where: str) -> list[str]:
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"{where}: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return list(names)


def _budgets(table: dict, where: str) -> dict[str, Budget]:
    try:
        return {key: Budget.from_dict(value, where=f"{where}.{key}") for key, value in table.items()}
    except BudgetError as exc:
        raise ConfigError(str(exc)) from None
