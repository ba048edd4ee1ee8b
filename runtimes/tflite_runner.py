"""TFLite through ai-edge-litert's interpreter (XNNPACK on CPU)."""
from __future__ import annotations

import numpy as np

from edgeport.runtimes.base import Runner, RunnerError


class TFLiteRunner(Runner):
    """Runs a ``.tflite`` file with NHWC input; quantized int8/uint8 I/O is handled here."""

    runtime = "tflite"

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interp = Interpreter(model_path=str(self.path), num_threads=self.threads)
            self._interp.allocate_tensors()
        except Exception as exc:
            raise RunnerError(f"tflite: cannot load {self.path}: {exc}") from exc
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        sig = self._in.get("shape_signature", self._in["shape"])
        self._fixed = None if sig[0] == -1 else int(sig[0])
        self._batch = int(self._in["shape"][0])

    def _unload(self) -> None:
        self._interp = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        nhwc = batch.transpose(0, 2, 3, 1)
        if self._fixed is None and nhwc.shape[0] != self._batch:
            self._interp.resize_tensor_input(self._in["index"], list(nhwc.shape))
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
            self._batch = nhwc.shape[0]
        self._interp.set_tensor(self._in["index"], _quantize(nhwc, self._in))
        self._interp.invoke()
        return _dequantize(self._interp.get_tensor(self._out["index"]), self._out)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input -> the tensor's dtype, using its (scale, zero_point) when it is integer."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    if not scale:
        raise RunnerError(f"tflite: integer input {detail['name']} has no quantization scale")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


def tflite_io_details(path: str) -> dict:
    """Input and output name, shape, dtype and (scale, zero point) of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))

    def describe(d: dict) -> dict:
        scale, zero = d["quantization"]
        out = {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
        if scale:
            out.update(scale=float(scale), zero_point=int(zero))
        return out

    return {"input": describe(interp.get_input_details()[0]), "output": describe(interp.get_output_details()[0])}
