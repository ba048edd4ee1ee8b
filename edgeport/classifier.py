"""A validated variant as a Python callable: ``edgeport.load(folder)(image)``.

The variant is chosen and checked as ``edgeport serve`` does (``serving.selection``: it must have
passed validation and its file must still have the manifest's sha256), and images go through the
same decoding, preprocessing and runner as validation, so the scores are those the report judged.
Answers have the shape of transformers' image-classification pipeline.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgeport.serving.payloads import FUNCTIONS, ranked
from edgeport.serving.selection import ServedModel, select_variant

ImageLike = Image.Image | str | Path | np.ndarray


class Classifier:
    """Runs one validated variant on images (see ``edgeport.load``). Use as a context manager, or
    call ``close()``, to free the runtime; it also frees itself when garbage-collected."""

    def __init__(self, model: ServedModel, *, threads: int = 2) -> None:
        from edgeport.runtimes import runner_class

        self.model = model
        self._runner = runner_class(model.runtime)(model.path, threads=threads)
        self._runner.activate()

    @classmethod
    def open(cls, folder: str | Path, variant: str | None = None, *, threads: int | None = None) -> "Classifier":
        """The variant ``variant`` of the export folder (default: the fastest that passed validation)."""
        return cls(select_variant(folder, variant), threads=threads or 2)

    @property
    def variant(self) -> str:
        return self.model.variant

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    def logits(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """Raw logits, one row per image (N, labels)."""
        batch = images if isinstance(images, (list, tuple)) else [images]
        pre = self.model.preprocessing
        pixels = np.stack([pre(_as_image(x, pre.open)) for x in batch])
        return np.asarray(self._runner.infer(pixels))

    def __call__(self, images: ImageLike | Sequence[ImageLike], *, top_k: int | None = 5,
                 function_to_apply: str | None = None) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """``[{"label", "score"}]`` highest first (a list of those for a list of images), as the pipeline
        answers: softmax by default (sigmoid for a multi-label or one-label model), ``top_k`` entries."""
        function = function_to_apply or ("sigmoid" if self.model.multi_label or len(self.labels) == 1 else "softmax")
        if function not in FUNCTIONS:
            raise ValueError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}, not {function!r}")
        rows = self.logits(images)
        answers = [ranked(row, self.labels, top_k, function) for row in rows]
        return answers if isinstance(images, (list, tuple)) else answers[0]

    def close(self) -> None:
        self._runner.deactivate()

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Classifier({self.model.name!r}, variant={self.variant!r}, runtime={self.model.runtime!r})"


def _as_image(value: ImageLike, decode: Callable[[Path], Image.Image]) -> Image.Image:
    """A path (decoded by ``decode``: the model's decode mode), a PIL image or an HxWxC uint8 array
    (RGB) -> an RGB PIL image."""
    if isinstance(value, Image.Image):
        return value.convert("RGB") if value.mode != "RGB" else value
    if isinstance(value, np.ndarray):
        if value.ndim != 3 or value.shape[2] not in (3, 4) or value.dtype != np.uint8:
            raise ValueError(f"an image array must be H x W x 3 (RGB) or 4 (RGBA) uint8, got {value.shape} "
                             f"{value.dtype}")
        return Image.fromarray(value).convert("RGB")
    return decode(Path(value))
