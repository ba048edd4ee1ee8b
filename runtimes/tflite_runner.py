"""TFLite through ai-edge-litert's interpreter (XNNPACK on CPU)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgeport.runtimes.base import LANE_MAX_BYTES, Runner, RunnerError


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
        self._size = self.path.stat().st_size  # read once: _lane_count runs on every batch
        self._lanes: list[TFLiteRunner] = []
        self._pool: ThreadPoolExecutor | None = None

    def _unload(self) -> None:
        self._interp = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for lane in self._lanes:
            lane.deactivate()
        self._pool, self._lanes = None, []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """As ``Runner.infer``; a batch of several images for a small batch-1 file runs on
        ``threads`` interpreters of one thread each, side by side (``lanes``)."""
        lanes = self._lane_count(len(batch)) if np.ndim(batch) == 4 else 1
        if lanes < 2:
            return super().infer(batch)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts = np.array_split(batch, lanes)
        if len(self._lanes) < lanes:  # a lane is this file on a runner of one thread
            self._lanes += [TFLiteRunner(self.path, threads=1) for _ in range(lanes - len(self._lanes))]
            self._pool = self._pool or ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="tflite-lane")
        assert self._pool is not None
        return np.concatenate(list(self._pool.map(TFLiteRunner.infer, self._lanes[:lanes], parts)))

    def _lane_count(self, images: int) -> int:
        """How many single-thread interpreters a batch of ``images`` runs on (1: the usual path).

        Why lanes: a batch-1 file (every onnx2tf file) runs a batch image by image, and one
        image of a small model gives TFLite's threads too little to share: on gender-vit, 200
        images on 2 cores took 2.11 s on one interpreter with 2 threads against 1.09 s on two
        interpreters with 1 thread each (tflite-int8, whose int16 kernels use one thread),
        0.24 s against 0.08 s (tflite-int8-dynamic), 0.22 s against 0.19 s (tflite-fp32), with
        the same logits. Only for files up to ``LANE_MAX_BYTES``: each lane holds its own
        interpreter, and a large model's kernels use the threads within one image.
        Latency (batch 1) is measured on the one interpreter with ``threads`` threads.
        """
        self.activate()
        if self.threads < 2 or images < 2 or self._fixed != 1 or self._size > LANE_MAX_BYTES:
            return 1
        return min(self.threads, images)

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
