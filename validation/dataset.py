"""Evaluation sets, read once and preprocessed once: class folders (``EVAL/CLASS/*.jpg``), or for
a multi-label model a CSV manifest (``file,labels``: a path relative to the CSV's folder, and the
labels that apply, separated by ``;``).

A file that cannot be used is reported by name with a reason and counted, never a crash.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgeport.validation.jpeg_turbo import TurboJpeg, decode_jpeg, peek_jpeg

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


class LabelMappingError(ValueError):
    """Class folders that match none of the model's labels."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # the class index; -1 for a multi-label sample
    targets: tuple[int, ...] | None = None  # a multi-label sample's label indices (possibly none)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class EvalSet:
    """The images of an evaluation folder, with the label index of each."""

    root: Path
    labels: list[str]
    samples: list[Sample] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    folder_to_label: dict[str, str] = field(default_factory=dict)
    ignored_folders: list[str] = field(default_factory=list)  # left out by the label mapping
    multi_label: bool = False  # read from a label CSV: each sample has any number of labels


IGNORE = "ignore"


def map_folders_to_labels(folders: Iterable[str], labels: Sequence[str],
                          label_map: dict[str, str] | None = None) -> dict[str, int]:
    """Map class-folder names to label indices, case-insensitively.

    ``label_map`` maps a folder name to a label, or to "ignore" to leave the folder out;
    it is consulted first. Raises LabelMappingError listing every folder that matches no
    label, and every mapping that names an unknown label.
    """
    by_name = {label.lower(): i for i, label in enumerate(labels)}
    bad = sorted(f"{k}={v}" for k, v in (label_map or {}).items() if v.lower() != IGNORE and v.lower() not in by_name)
    explicit = {k.lower(): v for k, v in (label_map or {}).items()}
    if bad:
        raise LabelMappingError(f"label mapping {', '.join(bad)} names no label of the model "
                                f"({', '.join(labels)}); map a folder to one of them, or to '{IGNORE}'")
    mapping, unmatched = {}, []
    for folder in sorted(folders):
        target = explicit.get(folder.lower(), folder).lower()
        if target == IGNORE:
            continue
        index = by_name.get(target)
        if index is None:
            unmatched.append(folder)
        else:
            mapping[folder] = index
    if unmatched:
        raise LabelMappingError(
            f"class folder(s) {', '.join(repr(f) for f in unmatched)} match none of the model's "
            f"labels ({', '.join(labels)}); rename the folders to the labels (case does not matter), or map "
            f"them with --label-map FOLDER=LABEL (FOLDER={IGNORE} to leave one out; in the config: "
            "[models.label_map])"
        )
    return mapping


LABEL_SEPARATOR = ";"


def scan_eval_set(root: str | Path, labels: Sequence[str], label_map: dict[str, str] | None = None) -> EvalSet:
    """List the images under ``root/CLASS/`` (or those a label CSV names: ``scan_label_csv``);
    raise before any work if a folder or a label matches no label of the model."""
    root = Path(root)
    if root.suffix.lower() == ".csv" and root.is_file():
        return scan_label_csv(root, labels, label_map)
    if not root.is_dir():
        raise FileNotFoundError(f"evaluation folder not found: {root}")
    folders = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not folders:
        raise LabelMappingError(f"{root} has no class folders; expected {root}/LABEL/image.jpg")
    mapping = map_folders_to_labels(folders, labels, label_map)
    result = EvalSet(root=root, labels=list(labels),
                     folder_to_label={f: labels[i] for f, i in mapping.items()})
    for folder in sorted(set(folders) - set(mapping)):
        result.ignored_folders.append(folder)
    for folder, index in sorted(mapping.items()):
        entries = sorted((root / folder).iterdir())
        if not any(not p.name.startswith(".") for p in entries):
            result.skipped.append(Skipped(f"{folder}/", f"empty class folder (label {labels[index]!r} gets no images)"))
        for path in entries:
            rel = str(path.relative_to(root))
            if path.name.startswith("."):
                result.skipped.append(Skipped(rel, "hidden file"))
            elif path.is_dir():
                result.skipped.append(Skipped(rel, "nested folder (not read)"))
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                result.skipped.append(Skipped(rel, f"not an image extension ({path.suffix or 'none'})"))
            else:
                result.samples.append(Sample(path, index))
    return result


def read_label_csv(csv_path: Path) -> list[dict[str, str]]:
    """The rows of a label CSV (``file``, ``labels``); a LabelMappingError when a column is missing."""
    import csv

    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "labels"} - set(reader.fieldnames or [])
        if missing:
            raise LabelMappingError(f"{csv_path}: needs the columns file and labels (missing: "
                                    f"{', '.join(sorted(missing))}); one row per image: file,labels with the "
                                    f"labels separated by '{LABEL_SEPARATOR}'")
        return list(reader)


def scan_label_csv(csv_path: str | Path, labels: Sequence[str], label_map: dict[str, str] | None = None) -> EvalSet:
    """The images a multi-label evaluation manifest names: a CSV with a ``file`` column (relative to
    the CSV's folder) and a ``labels`` column (the labels that apply, separated by ``;``, empty for
    none). Label names match the model's case-insensitively, through ``label_map`` first ("ignore"
    drops a name). Unknown label names stop the run before any work; a missing or unreadable file
    is skipped with its reason."""
    csv_path = Path(csv_path)
    root = csv_path.parent
    rows = read_label_csv(csv_path)
    names = {name.strip() for row in rows for name in (row["labels"] or "").split(LABEL_SEPARATOR) if name.strip()}
    try:  # the same rules as class folder names
        mapping = map_folders_to_labels(names, labels, label_map)
    except LabelMappingError as exc:
        raise LabelMappingError(f"{csv_path}: " + str(exc).replace("class folder(s)", "label name(s)").replace(
            "rename the folders to the labels", "use the model's label names")) from None
    result = EvalSet(root=root, labels=list(labels), multi_label=True,
                     folder_to_label={name: labels[i] for name, i in mapping.items()},
                     ignored_folders=sorted(names - set(mapping)))
    for number, row in enumerate(rows, 2):
        rel = (row["file"] or "").strip()
        path = root / rel
        targets = tuple(sorted({mapping[n.strip()] for n in (row["labels"] or "").split(LABEL_SEPARATOR)
                                if n.strip() in mapping}))
        if not rel:
            result.skipped.append(Skipped(f"{csv_path.name}:{number}", "no file named"))
        elif not path.is_file():
            result.skipped.append(Skipped(rel, f"not found (named on line {number} of {csv_path.name})"))
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            result.skipped.append(Skipped(rel, f"not an image extension ({path.suffix or 'none'})"))
        else:
            result.samples.append(Sample(path, -1, targets))
    return result


# What open_image decodes: a file, bytes, a binary stream, or what peek_image returned.
ImageSource = str | Path | bytes | IO[bytes] | Image.Image | TurboJpeg


def open_image(source: ImageSource, *,
               draft: Callable[[int, int], tuple[int, int] | None] | None = None) -> Image.Image:
    """Decode an image (a file, bytes, a binary stream, or what ``peek_image`` returned), upright
    (EXIF orientation applied), as RGB.

    Fully, unless ``draft`` is given: then a JPEG is decoded at the smallest of libjpeg's DCT
    scales (1/2, 1/4, 1/8) that is still at least the size ``draft(width, height)`` returns for
    its stored size (PIL's ``Image.draft``; None: fully). Other formats are always decoded fully.
    JPEGs that libjpeg-turbo's own API decodes to Pillow's very pixels take that faster path
    (``validation.jpeg_turbo``); everything else is Pillow's.

    Raises ValueError with a readable reason for anything that cannot be used.
    """
    if isinstance(source, (str, Path, bytes)):
        source = peek_image(source)
    if isinstance(source, TurboJpeg):
        rgb = decode_jpeg(source, draft(*source.size) if draft is not None else None)
        if rgb is not None:
            return rgb
        source = io.BytesIO(source.data)  # libjpeg warned, or another scale: Pillow's path answers
    with _readable_errors():
        img = source if isinstance(source, Image.Image) else Image.open(source)
        with img:  # leaving the block closes the file; the pixels stay (Pillow >= 13)
            size = draft(*img.size) if draft is not None else None
            if size is not None:  # only JPEG (and MPO, phones' multi-picture JPEG) has a draft mode
                img.draft(None, size)
            img.load()
            # in place: a copy of every image costs a request more than its decoding's last third
            ImageOps.exif_transpose(img, in_place=True)
            rgb = _to_rgb(img)
    return rgb


def peek_image(source: str | Path | bytes | IO[bytes]) -> Image.Image | TurboJpeg:
    """An image with its header read and nothing decoded (``size`` known, 2 us for a JPEG that
    ``validation.jpeg_turbo`` decodes, about 20 us for one Pillow opens), for ``open_image`` to
    decode; ValueError, as ``open_image`` raises, for anything that is no usable image by its
    header."""
    if isinstance(source, (str, Path)):
        source = _read(source)
    if isinstance(source, bytes):
        source = peek_jpeg(source) or io.BytesIO(source)
    if isinstance(source, TurboJpeg):
        return source
    with _readable_errors():
        return Image.open(source)


def _read(path: str | Path) -> bytes:
    """A file's bytes; ValueError, as for an unreadable image, when it cannot be read."""
    with _readable_errors():
        return Path(path).read_bytes()


@contextlib.contextmanager
def _readable_errors() -> Iterator[None]:
    """PIL's failures as ValueError with a readable reason; a decompression bomb refused from PIL's
    pixel limit (PIL only warns between 1x and 2x it; that is a bomb here too)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"image too large (decompression bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"corrupt or truncated image: {exc}") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits instead of clipping at 255
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def load_eval_arrays(
    eval_set: EvalSet,
    preprocess: Callable[[Image.Image], np.ndarray],
    *,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Decode and preprocess every sample once (decoded as ``preprocess.open`` does when it has
    one: a ``validation.preprocess.Preprocessing``'s decode mode; else fully).

    Returns (inputs N x C x H x W float32, labels, paths N): labels are N class indices, or for
    a multi-label set N x L (0 or 1 per label). Files that fail are moved to ``eval_set.skipped``
    with the reason.
    """
    from tqdm import tqdm

    decode = getattr(preprocess, "open", open_image)
    arrays, labels, paths = [], [], []
    for sample in tqdm(eval_set.samples, desc="reading images", unit="img", disable=not progress):
        try:
            arrays.append(preprocess(decode(sample.path)))
        except ValueError as exc:
            eval_set.skipped.append(Skipped(str(sample.path.relative_to(eval_set.root)), str(exc)))
            continue
        if eval_set.multi_label:
            hot = np.zeros(len(eval_set.labels), dtype=np.int64)
            hot[list(sample.targets or ())] = 1
            labels.append(hot)
        else:
            labels.append(sample.label)
        paths.append(sample.path)
    if not arrays:
        raise ValueError(f"no usable images in {eval_set.root} ({len(eval_set.skipped)} skipped)")
    return np.stack(arrays), np.asarray(labels, dtype=np.int64), paths
