"""PyTorch eager: the reference every other runtime is compared with."""
from __future__ import annotations

import numpy as np

from edgeport.runtimes.base import Runner, RunnerError
from edgeport.runtimes.lean_start import UNUSED_BY_CLASSIFIERS


class TorchRunner(Runner):
    """Runs a Hugging Face image-classification model directory (or hub id) in PyTorch."""

    runtime = "torch"
    unused_packages = UNUSED_BY_CLASSIFIERS

    def __init__(self, path, *, threads: int = 2, revision: str | None = None, allow_pickle: bool = False) -> None:
        super().__init__(path, threads=threads)
        self.revision = revision or None
        self.allow_pickle = allow_pickle  # False: safetensors only
        self._model = None

    def activate(self) -> None:
        # A hub id is not a local path, so skip the base class's existence check for it.
        if not self._active:
            self._load()
            self._active = True

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForImageClassification

        torch.set_num_threads(self.threads)
        try:
            self._model = AutoModelForImageClassification.from_pretrained(
                str(self.path), revision=self.revision, use_safetensors=None if self.allow_pickle else True
            ).eval()
        except (OSError, ValueError) as exc:
            raise RunnerError(f"torch: cannot load model from {self.path}: {exc}") from exc

    def _unload(self) -> None:
        self._model = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self._model(pixel_values=torch.from_numpy(batch)).logits
        return logits.float().numpy()
