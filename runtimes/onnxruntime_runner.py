"""ONNX Runtime, CPU execution provider."""
from __future__ import annotations

import re

import numpy as np

from edgeport.runtimes.base import Runner, RunnerError

# onnxruntime graph optimizations that change results, off in every session edgeport opens.
# Pad_Fusion folds a constant zero Pad into the next MaxPool's pads, which MaxPool treats as
# -inf: a window of negative values then yields its maximum instead of the padded 0
# (onnxruntime PR 18136 fuses without checking the pad value; onnx-optimizer has the same
# fold, onnx/optimizer PR 318). BiT's "SAME" max pool is such a Pad + MaxPool; once the input
# shape is fixed the pads are constants and the fold fires: 7.8e-4 off on random inputs, and
# the TFLite files made from the folded copy were 0.22 off on real faces.
UNSAFE_OPTIMIZERS = ["Pad_Fusion"]


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
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"],
                disabled_optimizers=UNSAFE_OPTIMIZERS,
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
        try:
            return self._session.run(None, {self._input_name: feed})[0]
        except Exception as exc:  # onnxruntime's own exception types, with its C++ source location
            raise RunnerError(f"onnxruntime failed on a batch of {len(batch)}: {ort_message(exc)}") from None


def ort_message(exc: BaseException) -> str:
    """onnxruntime's error as one sentence: the node and what went wrong, without the error code,
    the C++ source location and the function signature it carries (for reports and logs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", text)
    message = text.split("Status Message: ", 1)[-1]
    message = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", message)
    message = re.sub(r"^/\S+:\d+ \S+?\(.*?\) ", "", message)  # the source location and signature
    message = re.sub(r"^[^.]* was false\. ", "", message)  # the failed C++ condition
    return ((f"{node.group(1)} node {node.group(2)!r}: " if node else "") + message)[:300]
