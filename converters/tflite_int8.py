"""TFLite full-integer int8, calibrated on real images (onnx2tf -oiqt, TF converter backend).

Two files come out of the same calibration:
- ``tflite-int8``: int8 weights and activations, float32 input and output;
- ``tflite-int8-io``: the same with int8 input and output, for camera pipelines that feed
  quantized pixels; its input/output scale and zero point are recorded in the manifest.
onnx2tf also writes 16x8 (int16 activation) files; they abort ai-edge-litert 2.1 at
allocate_tensors(), so they are not shipped.
"""
from __future__ import annotations

from pathlib import Path

from converters.tensorflow_run import copy_checked_tflite


def copy_tflite_int8(tf_outputs: Path, out_path: str | Path, *, int8_io: bool = False) -> dict:
    """Copy the full-integer .tflite (float I/O, or int8 I/O with ``int8_io``) if builtin-only."""
    return copy_checked_tflite(tf_outputs, "int8-io" if int8_io else "int8", out_path)
