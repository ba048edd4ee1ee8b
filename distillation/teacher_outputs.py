"""The teacher's logits on the distillation images: computed once, batched, with progress, and
cached by content.

The cache holds one row per image, keyed by the sha256 of the image file, in a file named by
the teacher's key (its weights' sha256 and its preprocessing). A second run on the same images
computes nothing; adding images computes only the new ones; a changed teacher or processor is
a different file. Writes are atomic, so a run killed while writing leaves the previous cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from edgeport.validation.dataset import open_image


def default_cache_dir() -> Path:
    """``$EDGEPORT_CACHE`` or ``$XDG_CACHE_HOME/edgeport`` (``~/.cache/edgeport``), then teacher-outputs/."""
    base = os.environ.get("EDGEPORT_CACHE") or str(Path(os.environ.get("XDG_CACHE_HOME") or
                                                        Path.home() / ".cache") / "edgeport")
    return Path(base) / "teacher-outputs"


def teacher_key(weights: dict, preprocessing: dict) -> str:
    """What the teacher's outputs depend on besides the image: its weights and its preprocessing."""
    text = json.dumps({"weights": weights, "preprocessing": preprocessing}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def teacher_logits(paths: list[Path], digests: list[str], key: str, cache_dir: Path,
                   preprocess: Callable[[Image.Image], np.ndarray], infer: Callable[[np.ndarray], np.ndarray], *,
                   batch: int = 64, progress: bool = True,
                   log: Callable[[str], None] = print) -> tuple[np.ndarray, int]:
    """The teacher's logits for ``paths`` (N x labels), from the cache where it has them, and how
    many of them were computed (not in the cache).

    ``digests`` are the files' sha256 (``images.file_digest``); ``preprocess`` turns an image into
    the teacher's (C, H, W) input; ``infer`` runs a batch of them.
    """
    from tqdm import tqdm

    cache_file = cache_dir / f"{key}.npz"
    known: dict[str, np.ndarray] = {}
    if cache_file.exists():
        try:
            with np.load(cache_file) as stored:
                known = dict(zip(stored["digests"].tolist(), stored["logits"]))
        except (OSError, ValueError, KeyError) as exc:  # a damaged cache is recomputed, not fatal
            log(f"teacher outputs: ignoring unreadable cache {cache_file} ({exc})")
    todo = [i for i, d in enumerate(digests) if d not in known]
    if todo:
        log(f"teacher outputs: computing {len(todo)} of {len(paths)} images "
            f"({len(paths) - len(todo)} from the cache {cache_file})")
        bar = tqdm(total=len(todo), desc="teacher", unit="img", disable=not progress)
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            inputs = np.stack([preprocess(open_image(paths[i])) for i in chunk])
            for i, row in zip(chunk, np.asarray(infer(inputs), dtype=np.float32)):
                known[digests[i]] = row
            bar.update(len(chunk))
        bar.close()
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".npz")
        os.close(fd)
        try:
            names = sorted(known)
            np.savez(tmp, digests=np.asarray(names), logits=np.stack([known[d] for d in names]))
            os.replace(tmp, cache_file)
        finally:
            Path(tmp).unlink(missing_ok=True)
    else:
        log(f"teacher outputs: all {len(paths)} images from the cache {cache_file}")
    return np.stack([known[d] for d in digests]).astype(np.float32), len(todo)
