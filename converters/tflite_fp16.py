"""TFLite fp16: fp16 weights, float32 compute and I/O (onnx2tf, TensorFlow converter backend).

onnx2tf's flatbuffer_direct fp16 file does not load in ai-edge-litert 2.1 (its CONV_2D
gets an fp16 input), so this one comes from the TensorFlow converter run.
"""
from __future__ import annotations

from pathlib import Path

from converters.tensorflow_run import copy_checked_tflite


def copy_tflite_fp16(tf_outputs: Path, out_path: str | Path) -> dict:
    """Copy the fp16 .tflite of a tensorflow_outputs folder to ``out_path`` if builtin-only."""
    return copy_checked_tflite(tf_outputs, "fp16", out_path)
