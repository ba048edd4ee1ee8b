"""TFLite dynamic-range int8: int8 weights, activations quantized at run time (onnx2tf -oiqt)."""
from __future__ import annotations

from pathlib import Path

from converters.tensorflow_run import copy_checked_tflite


def copy_tflite_int8_dynamic(tf_outputs: Path, out_path: str | Path) -> dict:
    """Copy the dynamic-range .tflite of a tensorflow_outputs folder to ``out_path`` if builtin-only."""
    return copy_checked_tflite(tf_outputs, "int8-dynamic", out_path)
