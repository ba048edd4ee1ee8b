"""Dataset listing, UTKFace metadata parsing and in-memory image caches.

Images are decoded once, converted to RGB and resized with PIL bilinear
(the same operation ``ViTImageProcessor`` performs with ``resample=2``), then
stored as uint8 ``[N, S, S, 3]`` arrays in a ``.npy`` cache outside the repo.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
UTK_RACES = ["white", "black", "asian", "indian", "other"]
AGE_BANDS = [(0, 9, "0-9"), (10, 17, "10-17"), (18, 39, "18-39"), (40, 59, "40-59"), (60, 200, "60+")]


def datasets_root(configured: str | None = None) -> Path:
    """Root of the shared datasets: $EDGEPORT_DATASETS, else the recipe value."""
    root = os.environ.get("EDGEPORT_DATASETS") or configured or "/work/shared/datasets"
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset root {path} not found; set EDGEPORT_DATASETS or [data].root in the recipe"
        )
    return path


def list_split(split_dir: Path, labels: list[str] | None) -> tuple[list[Path], np.ndarray]:
    """All images of a class-folder split, sorted by (class, file name).

    With ``labels`` given, folder names must be in it and the label index is
    the position in ``labels``; with ``labels=None`` every image gets label -1
    (used for unlabeled extra images).
    """
    paths: list[Path] = []
    ys: list[int] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if labels is not None and class_dir.name not in labels:
            raise ValueError(f"unexpected class folder {class_dir} (labels: {labels})")
        y = labels.index(class_dir.name) if labels is not None else -1
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(f)
                ys.append(y)
    if not paths:
        raise FileNotFoundError(f"no images under {split_dir}")
    return paths, np.asarray(ys, dtype=np.int64)


def load_rgb(path: Path, size: int | None) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), resample=Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def load_images(paths: list[Path], size: int, cache_dir: str | None) -> np.ndarray:
    """uint8 [N, size, size, 3] array of the images, cached as .npy by content of the path list."""
    key = hashlib.sha256(("\n".join(str(p) for p in paths) + f"|{size}").encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"images-{size}-{key}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        arr = np.load(cache)
        if arr.shape[0] == len(paths):
            return arr
    arr = np.stack([load_rgb(p, size) for p in paths])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, arr)
        tmp.replace(cache)
    return arr


@dataclass(frozen=True)
class UTKMeta:
    age: int
    gender: str  # "female" / "male"
    race: str


def utk_meta(path: Path) -> UTKMeta | None:
    """Parse AGE_GENDER_RACE_DATETIME.jpg (gender 0 = male, 1 = female)."""
    parts = path.name.split("_")
    try:
        age, gender, race = int(parts[0]), int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None
    if gender not in (0, 1) or not 0 <= race < len(UTK_RACES):
        return None
    return UTKMeta(age=age, gender="male" if gender == 0 else "female", race=UTK_RACES[race])


def age_band(age: int) -> str:
    for lo, hi, name in AGE_BANDS:
        if lo <= age <= hi:
            return name
    raise ValueError(age)
