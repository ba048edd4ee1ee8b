"""The one interface every runtime implements.

Modelled on Polygraphy's runners: a runner is built from a path, loads lazily in
``activate()``, runs ``infer()`` on a preprocessed batch and frees itself in
``deactivate()``; it is a context manager. Every runner takes the *same* input,
a float32 NCHW batch as a Hugging Face image processor produces it, and returns
float32 logits of shape (N, num_labels). Layout (NCHW/NHWC), dtype (float/int8)
and fixed batch sizes are each runner's own business.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import numpy as np


# The largest model run on lanes, one single-thread copy per core side by side (the TFLite
# runner's batches, onnx-int8-static's layer ranking): each lane holds its own copy, and a large
# model's kernels use the threads within one image. gender-vit's files are 1.5-6 MB, ViT-B/16's
# 90-330 MB.
LANE_MAX_BYTES = 64 * 2**20


class RunnerError(RuntimeError):
    """A runtime could not load or run an artifact; the message names the file."""


class Runner(abc.ABC):
    """Load one artifact and run batches through it."""

    #: short runtime name used in reports and manifests ("onnxruntime", "tflite", ...)
    runtime: ClassVar[str] = ""
    #: the loaded artifact's static batch size (None: any batch runs); set by ``_load``
    _fixed: int | None = None
    #: installed packages this runtime's libraries import at start-up without using them, hidden in
    #: validation's worker process, which runs this runner alone (runtimes.lean_start)
    unused_packages: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this runtime cannot run here (None: it can); the harness then reports its
        variants as not validated rather than failed (Core ML off macOS)."""
        return None

    def __init__(self, path: str | Path, *, threads: int = 2) -> None:
        self.path = Path(path)
        self.threads = threads
        self._active = False

    # -- life cycle -------------------------------------------------------
    def activate(self) -> None:
        """Load the artifact (idempotent)."""
        if not self._active:
            if not self.path.exists():
                raise RunnerError(f"{self.runtime}: artifact not found: {self.path}")
            self._load()
            self._active = True

    def deactivate(self) -> None:
        """Release the loaded artifact."""
        if self._active:
            self._unload()
            self._active = False

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- inference ---------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 NCHW batch and return float32 logits (N, num_labels)."""
        self.activate()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise RunnerError(f"{self.runtime}: expected an NCHW batch, got shape {batch.shape}")
        fixed = self.fixed_batch_size()
        if fixed is None or fixed == batch.shape[0]:
            out = self._infer(batch)
        else:
            # Artifacts exported with a static batch (onnx2tf output) run chunk by chunk.
            chunks = [self._infer(batch[i : i + fixed]) for i in range(0, batch.shape[0], fixed)]
            out = np.concatenate(chunks, axis=0)
        return np.asarray(out, dtype=np.float32)

    def fixed_batch_size(self) -> int | None:
        """The artifact's static batch size, or None when any batch size runs.

        A runner whose artifacts can have a static batch sets ``self._fixed`` in ``_load``.
        """
        self.activate()
        return self._fixed

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _unload(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...
