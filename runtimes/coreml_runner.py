"""Core ML ``.mlpackage`` files: checked here, never run (Core ML prediction is macOS-only).

coremltools converts on Linux, but its prediction API needs macOS's Core ML framework, so
this runner only says why it cannot run. The harness asks ``unavailable_reason`` first and
reports the variant as "not validated on this machine" instead of passed or failed; the
gate counts it as neither. The file's structure (image input, classifier outputs, labels)
was checked when it was made (``converters.coreml_export.check_mlpackage``).

Running one on a Mac would mean turning the harness's normalized NCHW batch back into
images (the file normalizes inside) and its probabilities into logits: not built, since no
Mac is here to test it on.
"""
from __future__ import annotations

import sys

import numpy as np

from edgeport.runtimes.base import Runner, RunnerError


class CoreMLRunner(Runner):
    runtime = "coreml"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if sys.platform != "darwin":
            return "not validated on this machine (Core ML runs on macOS)"
        return "not validated: running .mlpackage files on macOS is not built yet (edgeport checks them only)"

    def _load(self) -> None:
        raise RunnerError(f"coreml: {self.unavailable_reason()}: {self.path}")

    def _unload(self) -> None:
        pass

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise RunnerError(f"coreml: {self.unavailable_reason()}")
