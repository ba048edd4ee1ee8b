"""The distillation images: every image file under a folder, at any depth, with labels when the
first-level folders are named like the teacher's labels.

Each image is decoded once. What is kept in memory is the student's view (uint8 pixels at the
student's input size, prepared the way its processor prepares an image); the teacher's view is
made batch by batch while its outputs are computed (``distill.teacher_outputs``), so a large
teacher input (ViT-B/16's 224x224) never has to fit in memory for all images at once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.validation.dataset import (IMAGE_EXTENSIONS, LabelMappingError, Skipped, map_folders_to_labels,
                                         open_image)


class ImagesError(ValueError):
    """An image folder that cannot be used for distillation."""


@dataclass
class ImageSet:
    """The image files under ``root`` and, when its folders name the teacher's labels, their labels."""

    root: Path
    paths: list[Path]
    labels: np.ndarray | None  # class index per path, or None
    label_note: str  # where the labels came from, or why there are none
    skipped: list[Skipped] = field(default_factory=list)


def scan_images(root: str | Path, teacher_labels: list[str], *, multi_label: bool = False) -> ImageSet:
    """List every image under ``root`` (any depth, hidden files and folders left out).

    Labels are used when every image sits in a first-level folder whose name is one of the
    teacher's labels (case does not matter); otherwise the images are unlabelled and only the
    teacher's outputs are learned. Raises ImagesError for a missing folder or one with no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise ImagesError(f"image folder not found: {root}")
    paths, skipped = [], []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.is_dir():
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            paths.append(path)
        else:
            skipped.append(Skipped(str(rel), f"not an image extension ({path.suffix or 'none'})"))
    if not paths:
        raise ImagesError(f"no image files under {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} "
                          "at any depth)")
    labels, note = None, "no labels: the images are not all in folders named like the teacher's labels"
    if multi_label:
        note = "no labels: the teacher is multi-label, and its outputs are learned alone"
    elif all(len(p.relative_to(root).parts) >= 2 for p in paths):
        folders = sorted({p.relative_to(root).parts[0] for p in paths})
        try:
            mapping = map_folders_to_labels(folders, teacher_labels)
        except LabelMappingError:
            mapping = None
        if mapping is not None and set(mapping) == set(folders):
            labels = np.asarray([mapping[p.relative_to(root).parts[0]] for p in paths], dtype=np.int64)
            note = f"labels from the folder names ({', '.join(folders)})"
    return ImageSet(root=root, paths=paths, labels=labels, label_note=note, skipped=skipped)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (the teacher-output cache's key for that image)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_student_views(images: ImageSet, pixels, *, progress: bool = True) -> tuple[np.ndarray, list[int]]:
    """Decode every image once into the student's uint8 view (N, H, W, 3) with ``pixels`` (a
    ``Preprocessing.pixels``). Returns the views and the indices into ``images.paths`` that
    decoded; the others are added to ``images.skipped`` with the reason."""
    from tqdm import tqdm

    views, kept = [], []
    for i, path in enumerate(tqdm(images.paths, desc="reading images", unit="img", disable=not progress)):
        try:
            views.append(pixels(open_image(path)))
        except ValueError as exc:
            images.skipped.append(Skipped(str(path.relative_to(images.root)), str(exc)))
            continue
        kept.append(i)
    if not views:
        raise ImagesError(f"none of the {len(images.paths)} image files under {images.root} could be read "
                          f"(first: {images.skipped[0].path}: {images.skipped[0].reason})")
    return np.stack(views), kept
