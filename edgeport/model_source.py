"""Where a model comes from: a local Hugging Face directory, or a hub id at a pinned revision."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.converters.checksums import sha256_file

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHTS = "model.safetensors"
DISTILL_REPORT = "distill.json"  # a student's verdict against its teacher (edgeport distill)
# What save_pretrained writes for a model larger than its max_shard_size: the index (which tensor
# is in which file) and model-0000K-of-0000N.safetensors. transformers loads either layout.
SHARD_INDEX = "model.safetensors.index.json"
# What every model folder needs besides its weights: the labels and the preprocessing
METADATA_FILES = ("config.json", "preprocessor_config.json")


class ModelSourceError(ValueError):
    """The model cannot be found or is not a usable image classifier directory."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: ``location`` is an absolute directory or a hub id."""

    location: str
    revision: str | None
    local: bool
    allow_pickle: bool = False  # the user opted in to pickle weights (--allow-pickle)

    @property
    def weights_file(self) -> Path | None:
        """The local weights file (safetensors, the shard index, else the opted-in pickle), or None
        for hub ids."""
        if not self.local:
            return None
        folder = Path(self.location)
        for name in (WEIGHTS, SHARD_INDEX):
            if (folder / name).exists():
                return folder / name
        pickles = _pickle_files(folder)
        return folder / pickles[0] if pickles else None

    def describe(self) -> dict[str, Any]:
        """Provenance for manifests and reports (``path`` absolute here; the pipeline records it relative)."""
        info: dict[str, Any] = {"path": self.location} if self.local else {"id": self.location}
        info["revision"] = self.revision
        if self.allow_pickle:
            info["allow_pickle"] = True
        if not self.local:
            cached = _hub_cached(self.location, WEIGHTS, self.revision)
            index = None if cached else _hub_cached(self.location, SHARD_INDEX, self.revision)
            if cached:  # the weights the export read, when they are in the cache already
                info["weights_file"] = WEIGHTS
                info["weights_sha256"] = sha256_file(cached)
            elif index:
                shards = [_hub_cached(self.location, name, self.revision) for name in shard_names(index)]
                if all(shards):
                    info.update(_sharded(index, shards))
        if self.local:
            cfg = json.loads((Path(self.location) / "config.json").read_text())
            info["random_weights"] = bool(cfg.get("edgeport_random_weights", False))
            weights = self.weights_file
            info["weights_file"] = weights.name
            if weights.name == SHARD_INDEX:
                info.update(_sharded(weights, [weights.parent / name for name in shard_names(weights)]))
            else:
                info["weights_format"] = "safetensors" if weights.name == WEIGHTS else "pickle (--allow-pickle)"
                info["weights_sha256"] = sha256_file(weights)
        return info


def shard_names(index: Path) -> list[str]:
    """The shard files a safetensors index names (its weight_map's values), sorted."""
    try:
        weight_map = json.loads(Path(index).read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelSourceError(f"{index} is not a safetensors shard index (no weight_map): {exc}") from None
    names = sorted(set(weight_map.values()))
    unsafe = [n for n in names if Path(n).name != n or not n.endswith(".safetensors")]
    if not names or unsafe:
        raise ModelSourceError(f"{index}: its weight_map must name .safetensors files in the same folder, "
                               f"not {unsafe or 'nothing'}")
    return names


def missing_shards(folder: Path) -> list[str]:
    """The shards ``folder``'s shard index names that are not in it (none without an index)."""
    if not (folder / SHARD_INDEX).is_file():
        return []
    return [n for n in shard_names(folder / SHARD_INDEX) if not (folder / n).is_file()]


def _names_missing(missing: list[str], folder: Path) -> str:
    """'names N shard(s) that are not in FOLDER: a, b, c ...', for an error about ``missing``."""
    return (f"names {len(missing)} shard(s) that are not in {folder}: "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")


def _sharded(index: Path, shards: list[Path]) -> dict[str, Any]:
    """A sharded checkpoint's provenance: each shard's sha256, and one sha256 over the index and
    all of them, which changes when any file does (the export's reuse key reads it)."""
    files = [{"file": Path(s).name, "sha256": sha256_file(s)} for s in shards]
    listing = f"{SHARD_INDEX} {sha256_file(index)}\n" + "".join(f"{f['file']} {f['sha256']}\n" for f in files)
    return {"weights_file": SHARD_INDEX, "weights_format": f"safetensors, {len(files)} shards",
            "weights_shards": files, "weights_sha256": hashlib.sha256(listing.encode()).hexdigest()}


def _pickle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))


def resolve_source(source: str, revision: str | None = None, base_dir: str | Path = ".", *,
                   allow_pickle: bool = False) -> ModelSource:
    """Turn a config/CLI ``source`` into a ModelSource, with a clear error if it is unusable.

    Local folders must hold ``model.safetensors``; pickle weights (which can run code when
    loaded) are used only with ``allow_pickle``, which the manifest and report record.
    Reading a model needs the [export] extra (transformers, huggingface_hub): without it, the
    error is the install command, before anything is read.
    """
    from edgeport.backends import missing_message

    needs = missing_message("export")
    if needs:
        raise ModelSourceError(f"reading the Hugging Face model {source} {needs}")
    path = Path(source) if Path(source).is_absolute() else Path(base_dir) / source
    if path.is_dir():
        missing = [n for n in METADATA_FILES if not (path / n).exists()]
        if missing:
            raise ModelSourceError(
                f"{path} is missing {', '.join(missing)}: save the model and its image processor "
                "with save_pretrained() into that folder"
            )
        check_image_classifier(path / "config.json")
        if (path / SHARD_INDEX).exists() and not (path / WEIGHTS).exists():
            missing = missing_shards(path)
            if missing:
                raise ModelSourceError(f"{path / SHARD_INDEX} {_names_missing(missing, path)}; copy every "
                                       "file save_pretrained wrote")
            return ModelSource(str(path.resolve()), revision, local=True)
        if not (path / WEIGHTS).exists():
            pickles = _pickle_files(path)
            if pickles and allow_pickle:
                return ModelSource(str(path.resolve()), revision, local=True, allow_pickle=True)
            hint = (f" It holds pickle weights ({', '.join(pickles)}), which can run code when loaded; "
                    "convert them once in a trusted environment with "
                    "model.save_pretrained(dir, safe_serialization=True), or pass --allow-pickle if you "
                    "trust this file (the report records it).") if pickles else ""
            raise ModelSourceError(f"{path / WEIGHTS} not found (nor a sharded {SHARD_INDEX}): edgeport loads "
                                   f"safetensors weights only.{hint}")
        return ModelSource(str(path.resolve()), revision, local=True)
    if HUB_ID.match(source) and not source.startswith((".", "/")):
        if not revision:
            raise ModelSourceError(
                f"{source!r} is not a local folder, so it is read as a Hugging Face Hub id; pin it with a "
                "revision (a commit sha) in the config or with --revision, so that what you validate is what ships"
            )
        _check_hub_revision(source, revision)
        return ModelSource(source, revision, local=False, allow_pickle=allow_pickle)
    raise ModelSourceError(f"model not found: {path} is not a folder (and {source!r} is not a hub id)")


# What an export reads from a hub model's snapshot: the files resolve_source requires of a local
# folder, and its weights (safetensors, or the shard index and its shards).
HUB_FILES = [*METADATA_FILES, WEIGHTS, SHARD_INDEX, "model-*-of-*.safetensors"]
HUB_PICKLE_FILES = ["*.bin", "*.bin.index.json", "*.pt", "*.pth", "*.ckpt"]  # with --allow-pickle only


def model_folder(source: ModelSource) -> Path:
    """The folder the model's files are read from: a local model's own; for a hub id, its snapshot
    at the pinned revision in the Hugging Face cache, with the files an export reads fetched into
    it first (from the cache alone where the Hub cannot be reached or HF_HUB_OFFLINE=1).

    Why the converters get a folder rather than the id: optimum's exporter loads a hub model's
    processors by id without its revision, from ``main``: with the Hub out of reach and
    HF_HUB_OFFLINE unset, its retries held an export for minutes; with the Hub in reach, it read
    files of another revision. A folder pins everything that reads it.
    """
    if source.local:
        return Path(source.location)
    from huggingface_hub import snapshot_download

    patterns = HUB_FILES + (HUB_PICKLE_FILES if source.allow_pickle else [])
    try:
        folder = Path(snapshot_download(source.location, revision=source.revision, allow_patterns=patterns))
    except Exception as exc:  # huggingface_hub's lookup and HTTP errors, whatever their class
        raise ModelSourceError(f"cannot read {source.location!r} at revision {source.revision!r} into the local "
                               f"Hugging Face cache: {type(exc).__name__}: {str(exc)[:300]}") from None
    fix = _download_fix(source.location, source.revision)
    where = f"{source.location!r} at revision {source.revision!r}"
    # snapshot_download skips a pattern nothing matches: a repository without an image processor
    # config is found here, before anything is written, not by the first step that reads it
    unread = [n for n in METADATA_FILES if not (folder / n).is_file()]
    if unread:
        raise ModelSourceError(f"{where} has no {', '.join(unread)} in {folder}: {fix}; if the repository has "
                               "none, save the model and its image processor with save_pretrained() into a "
                               "folder and export that folder")
    weights = [n for n in (WEIGHTS, SHARD_INDEX) if (folder / n).is_file()] or \
        (_pickle_files(folder) if source.allow_pickle else [])
    if not weights:
        raise ModelSourceError(f"{where} has no {WEIGHTS} (nor {SHARD_INDEX}) in {folder}: {fix}"
                               + ("" if source.allow_pickle else
                                  ", or pass --allow-pickle if the repository has only pickle weights"))
    missing = [] if WEIGHTS in weights else missing_shards(folder)
    if missing:
        raise ModelSourceError(f"{where}: {SHARD_INDEX} {_names_missing(missing, folder)}; {fix}")
    return folder


def _download_fix(repo_id: str, revision: str | None) -> str:
    """How to bring a hub model that cannot be read here into the local cache."""
    return (f"download it where the Hub is reachable (`huggingface-cli download {repo_id} --revision {revision}`) "
            "and copy the cache folder (HF_HOME) here")


def _check_hub_revision(repo_id: str, revision: str) -> None:
    """Fail now, with the fix, when ``repo_id`` at ``revision`` cannot be read (hub or local cache)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        config = hf_hub_download(repo_id, "config.json", revision=revision)
    except OSError as exc:  # every huggingface_hub lookup error is an OSError
        where = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
        missing = f"{repo_id!r} at revision {revision!r} is not in the local Hugging Face cache ({where} not found)"
        download = _download_fix(repo_id, revision)
        if constants.HF_HUB_OFFLINE:
            raise ModelSourceError(f"{missing} and HF_HUB_OFFLINE=1 keeps edgeport off the network: check the "
                                   f"revision, or {download}") from None
        if isinstance(exc, LocalEntryNotFoundError):  # no answer from the Hub (after its retries), no cached copy
            raise ModelSourceError(f"{missing} and the Hugging Face Hub could not be reached: {download}; on a "
                                   "machine without network, set HF_HUB_OFFLINE=1 to read the cache without "
                                   "trying the Hub first") from None
        raise ModelSourceError(f"cannot read {repo_id!r} at revision {revision!r} from the Hugging Face Hub: "
                               f"{type(exc).__name__}: {exc}") from None
    check_image_classifier(Path(config), shown_as=f"{repo_id}@{revision} config.json")


def check_image_classifier(config_json: Path, *, shown_as: str | None = None) -> None:
    """Refuse a model that AutoModelForImageClassification cannot load (a text model, a detector...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES as SUPPORTED

    where = shown_as or str(config_json)
    try:
        cfg = json.loads(Path(config_json).read_text())
    except ValueError as exc:
        raise ModelSourceError(f"{where} is not valid JSON: {exc}") from None
    model_type = cfg.get("model_type")
    architectures = cfg.get("architectures") or []
    heads = [a for a in architectures if not a.endswith("ForImageClassification")
             and not a.endswith("ForImageClassificationWithTeacher")]
    if model_type not in SUPPORTED or (architectures and len(heads) == len(architectures)):
        what = f"model_type {model_type!r}" + (f" with head {', '.join(architectures)}" if architectures else "")
        raise ModelSourceError(
            f"{where}: {what} is not an image classifier; edgeport exports models that transformers' "
            "AutoModelForImageClassification loads (an image-classification head with id2label), of model type "
            f"{', '.join(sorted(SUPPORTED))}"
        )


def _hub_cached(repo_id: str, filename: str, revision: str | None) -> Path | None:
    """The cached copy of a hub file, without touching the network; None when not cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def copy_model_metadata(source: ModelSource, out_dir: Path, folder: Path | None = None) -> None:
    """Copy config.json and preprocessor_config.json next to the artifacts, and a distilled
    student's distill.json (its verdict against its teacher) when the local folder has one.

    ``folder``: the model's files (``model_folder(source)``, which a caller that already has it
    passes, so that a hub snapshot is not looked up twice)."""
    folder = folder if folder is not None else model_folder(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in METADATA_FILES:
        shutil.copyfile(folder / name, out_dir / name)
    distilled = Path(source.location) / DISTILL_REPORT if source.local else None
    if distilled is not None and distilled.is_file():
        shutil.copyfile(distilled, out_dir / DISTILL_REPORT)
    else:  # a folder exported before from another model must not keep its verdict
        (out_dir / DISTILL_REPORT).unlink(missing_ok=True)


def is_multi_label(config_json: Path) -> bool:
    """Whether a Hugging Face config is a multi-label classifier (problem_type), scored by sigmoid."""
    return json.loads(Path(config_json).read_text()).get("problem_type") == "multi_label_classification"


def read_labels(config_json: Path) -> list[str]:
    """Labels in output order, from a Hugging Face config's ``id2label``."""
    cfg = json.loads(config_json.read_text())
    id2label = cfg.get("id2label")
    if not id2label:
        raise ModelSourceError(f"{config_json} has no id2label: not an image classifier config")
    return [id2label[k] for k in sorted(id2label, key=int)]


