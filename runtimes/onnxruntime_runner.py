"""ONNX Runtime, CPU execution provider."""
from __future__ import annotations

import numpy as np

from edgeport.runtimes.base import Runner, RunnerError


class OnnxRuntimeRunner(Runner):
    """Runs an ``.onnx`` file whose single input is NCHW pixel values."""

    runtime = "onnxruntime"

    def _load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types
            raise RunnerError(f"onnxruntime: cannot load {self.path}: {exc}") from exc
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._input_type = inp.type
        dim0 = inp.shape[0]
        self._fixed = dim0 if isinstance(dim0, int) else None

    def _unload(self) -> None:
        self._session = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        feed = batch.astype(np.float16) if self._input_type == "tensor(float16)" else batch
        return self._session.run(None, {self._input_name: feed})[0]
