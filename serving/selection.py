"""Which validated variant a server runs: read from the model folder's manifest and report.

A server only runs what edgeport validated: a variant that passed its budget in
``report.json``, whose file still has the sha256 ``manifest.json`` recorded. Without a
variant named, the fastest passing one (batch-1 p50 in the report) is chosen.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.converters.checksums import artifact_sha256
from edgeport.model_source import read_labels
from edgeport.validation.preprocess import Preprocessing
from edgeport.validation.status import status_of


class ServeError(ValueError):
    """The model folder cannot be served as asked; the message names the file and the fix."""


@dataclass
class ServedModel:
    """What one server process serves."""

    name: str
    variant: str
    runtime: str
    path: Path
    sha256: str
    labels: list[str]
    preprocessing: Preprocessing
    channels: int = 3  # of the preprocessed input (the config's num_channels)
    multi_label: bool = False  # the config's problem_type: scores by sigmoid rather than softmax
    latency_p50_ms: float | None = None
    report_machine: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # what the operator should know (printed at start)

    def metadata(self, version: str) -> dict[str, Any]:
        """``GET /metadata``."""
        return {"model": self.name, "variant": self.variant, "runtime": self.runtime, "labels": self.labels,
                "preprocessing": self.preprocessing.to_dict(), "artifact": self.path.name,
                "artifact_sha256": self.sha256, "validated_p50_ms": self.latency_p50_ms,
                "validated_on": self.report_machine, "edgeport_version": version}


def _read_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    if not path.is_file():
        raise ServeError(f"{path} not found: {fix}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ServeError(f"{path} is not readable {what} ({exc}): {fix}") from None


def _preprocessing(model_dir: Path, manifest: dict[str, Any]) -> Preprocessing:
    """The steps the export recorded in the manifest, checked then against the model's own processor;
    read again through transformers only for a manifest without them (an older export)."""
    if manifest.get("preprocessing"):
        return Preprocessing.from_dict(manifest["preprocessing"])
    return Preprocessing.from_file(model_dir / "preprocessor_config.json")


def select_variant(model_dir: str | Path, variant: str | None = None) -> ServedModel:
    """The variant of ``model_dir`` (an ``edgeport export`` folder, validated) to serve.

    Raises ServeError when there is no report, when ``variant`` failed validation (or was not
    validated), when no variant passed, or when the artifact no longer matches the manifest.
    """
    from edgeport.backends import missing_backend
    from edgeport.runtimes import unavailable_reason
    from edgeport.runtimes.machine import cpu_description

    def cannot_run(runtime: str) -> str | None:  # this install lacks its backend, or this machine cannot run it
        return missing_backend(runtime) or unavailable_reason(runtime)

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ServeError(f"{model_dir} is not a folder: pass the model's folder under artifacts/ "
                         "(where `edgeport export` wrote manifest.json)")
    manifest = _read_json(model_dir / "manifest.json", "JSON", f"run `edgeport export` into {model_dir}")
    report = _read_json(model_dir / "report.json", "JSON", f"run `edgeport validate {model_dir}` first: "
                        "edgeport serves only variants that passed validation")
    records = {v["name"]: v for v in manifest.get("variants", [])}
    rows = {v["name"]: v for v in report.get("variants", []) if v.get("name") != "pytorch"}
    passing = {n: r for n, r in rows.items() if status_of(r) == "passed" and n in records
               and cannot_run(r.get("runtime", "")) is None}
    if variant is None:
        if not passing:
            raise ServeError(f"no variant passed its budget in {model_dir / 'report.json'}: "
                             "fix the export (see report.md) or name one with --variant")
        variant = min(passing, key=lambda n: (passing[n].get("latency_ms") or {}).get("p50") or float("inf"))
        chosen_by = "the fastest variant that passed validation"
    else:
        chosen_by = "named with --variant"
    if variant not in records:
        raise ServeError(f"{model_dir / 'manifest.json'} has no variant {variant!r}; it has: "
                         f"{', '.join(records) or 'none'}")
    row = rows.get(variant)
    if row is None:
        raise ServeError(f"{variant} is not in {model_dir / 'report.json'}: run `edgeport validate {model_dir}`")
    status = status_of(row)
    if status != "passed":
        raise ServeError(f"{variant} did not pass validation ({status}; see {model_dir / 'report.md'}): "
                         f"edgeport serves only validated variants; passing ones: {', '.join(passing) or 'none'}")
    unavailable = cannot_run(row.get("runtime", ""))
    if unavailable:
        raise ServeError(f"{variant} cannot run here: {unavailable}")
    record = records[variant]
    path = model_dir / record["path"]
    if not path.exists():
        raise ServeError(f"{path} is missing: run `edgeport export` again")
    sha = artifact_sha256(path)
    if record.get("sha256") and sha != record["sha256"]:
        raise ServeError(f"{path} changed after export (its sha256 no longer matches manifest.json): "
                         "run `edgeport export` and `edgeport validate` again")
    config = _read_json(model_dir / "config.json", "JSON", "run `edgeport export` again (it copies config.json)")
    preprocessing = _preprocessing(model_dir, manifest)
    judged = ((report.get("settings") or {}).get("preprocessing") or {}).get("decode", "exact")
    if preprocessing.decode != judged:  # the scores served must be those the report judged
        raise ServeError(f"{model_dir / 'report.json'} judged images decoded {judged!r}, and manifest.json now says "
                         f"{preprocessing.decode!r}: run `edgeport validate {model_dir}` again")
    model = ServedModel(
        name=manifest.get("model") or model_dir.name, variant=variant, runtime=row["runtime"], path=path, sha256=sha,
        labels=read_labels(model_dir / "config.json"),
        preprocessing=preprocessing,
        channels=int(config.get("num_channels", 3)),
        multi_label=config.get("problem_type") == "multi_label_classification",
        latency_p50_ms=(row.get("latency_ms") or {}).get("p50"), report_machine=report.get("machine"))
    model.notes.append(f"serving {variant} ({chosen_by}; {row['runtime']}, "
                       f"validated p50 {model.latency_p50_ms} ms)")
    here, there = cpu_description(), report.get("machine") or {}
    if there and (there.get("model"), there.get("cores")) != (here.get("model"), here.get("cores")):
        model.notes.append(f"report.json was measured on another machine ({there.get('model')}, {there.get('cores')} "
                           "cores); its latency ranking may not hold here: run `edgeport validate` here to re-rank")
    return model
