"""OpenVINO, CPU plugin, tuned for latency with the harness's thread count."""
from __future__ import annotations

import numpy as np

from edgeport.runtimes.base import Runner, RunnerError


class OpenVINORunner(Runner):
    """Runs an OpenVINO IR folder (``model.xml`` + ``model.bin``) or a ``.xml`` file, NCHW input."""

    runtime = "openvino"

    def _load(self) -> None:
        import openvino as ov

        xml = self.path / "model.xml" if self.path.is_dir() else self.path
        if not xml.exists():
            raise RunnerError(f"openvino: no model.xml in {self.path}")
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
            shape = model.inputs[0].get_partial_shape()
            self._fixed = shape[0].get_length() if shape[0].is_static else None
            self._compiled = core.compile_model(model, "CPU", {
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": self.threads,
                # fp32 on fp32: the CPU plugin would otherwise run bf16 on CPUs that have it
                "INFERENCE_PRECISION_HINT": "f32",
            })
        except Exception as exc:  # OpenVINO raises RuntimeError with its own message
            raise RunnerError(f"openvino: cannot load {xml}: {exc}") from exc
        self._request = self._compiled.create_infer_request()

    def _unload(self) -> None:
        self._request = None
        self._compiled = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: batch})
        return np.asarray(result[self._compiled.outputs[0]])
