"""`edgeport init`: a starter ``edgeport.toml`` for a user's own repository.

The file names one model (a local Hugging Face model folder, or a hub id with its pinned
revision), its evaluation and calibration folders, and the default budgets, each commented, so
that ``edgeport export-all``, ``gate``, ``bench`` and ``serve`` work from that folder. The budget
values are written from ``edgeport.config.DEFAULT_BUDGETS``, so the starter file and the built-in
defaults cannot drift apart; the file is checked by reading it back before it is kept.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgeport.config import CONFIG_NAME, DEFAULT_BUDGETS, ConfigError, load_config
from edgeport.converters.atomic import atomic_path

_BUDGET_NOTES = {
    "min_agreement": "share of images whose top-1 class is the PyTorch reference's",
    "max_abs_diff": "largest logit difference from PyTorch",
    "max_accuracy_drop": "percentage points of accuracy below the reference",
    "max_subgroup_drop": "the same on any evaluation subgroup of >= min_size images",
}


def starter_config(model: str, *, name: str | None = None, revision: str | None = None, eval_dir: str = "data/eval",
                   calibration_dir: str = "data/calib") -> str:
    """The text of a starter config for ``model``."""
    name = name or Path(model.rstrip("/")).name or "model"
    lines = [
        "# edgeport configuration (written by `edgeport init`): the models to export, and the budgets",
        "# every variant must meet. Paths are relative to this file. `edgeport --help` lists the commands;",
        "# `edgeport backends` says which variants this installation can make.",
        "",
        "[settings]",
        'artifacts = "artifacts"      # export-all writes artifacts/<model name>/',
        "threads = 2                  # threads per runtime, for evaluation and latency",
        "# variants = [...]           # default: every default variant the installed backends can make",
        "",
        "# Budgets by precision (fp32, fp16, int8) or by variant name (its keys override the precision's).",
    ]
    for group, budget in DEFAULT_BUDGETS.items():
        lines.append(f"[budgets.{group}]")
        for key, value in budget.__dict__.items():
            if value is not None:
                lines.append(f"{key} = {value!r}".ljust(29) + f"# {_BUDGET_NOTES.get(key, '')}".rstrip(" #"))
        lines.append("")
    def entry(key: str, value: str, note: str = "") -> str:
        text = f"{key} = {json.dumps(value)}"  # a JSON string is a valid TOML basic string
        return f"{text.ljust(28)} # {note}" if note else text

    lines += ["[[models]]", entry("name", name),
              entry("source", model, "the hub commit below pins it" if revision else
                    "a local model folder (config.json, weights, preprocessor_config.json), or a hub id + revision")]
    if revision:
        lines.append(entry("revision", revision, "the hub commit you validated"))
    lines += [entry("eval", eval_dir, "EVAL/CLASS/*.jpg: images in folders named like the labels"),
              entry("calibration", calibration_dir, "real images (any depth) for the int8 variants, disjoint from eval"),
              ""]
    return "\n".join(lines)


def write_starter_config(model: str, folder: str | Path = ".", *, force: bool = False, **options: str | None) -> Path:
    """Write ``folder/edgeport.toml`` for ``model``; refuses to overwrite one unless ``force``."""
    path = Path(folder) / CONFIG_NAME
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists: edit it, or pass --force to replace it")
    text = starter_config(model, **options)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
        try:
            load_config(tmp)  # a starter file edgeport cannot read would be worse than none
        except ConfigError as exc:
            raise ConfigError(f"the starter config for {model!r} does not read back ({exc}); "
                              "check the model name and folders") from None
    return path
