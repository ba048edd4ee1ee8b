"""TFLite dynamic-range int8: int8 weights, activations quantized at run time (onnx2tf -oiqt)."""
from __future__ import annotations

import shutil
from pathlib import Path

from converters.atomic import atomic_path
from converters.tensorflow_run import tflite_file
from converters.tflite_ops import require_builtin_ops


def copy_tflite_int8_dynamic(tf_outputs: Path, out_path: str | Path) -> dict:
    """Copy the dynamic-range .tflite of a tensorflow_outputs folder to ``out_path`` if builtin-only."""
    src = tflite_file(tf_outputs, "int8-dynamic")
    ops = require_builtin_ops(src)
    with atomic_path(out_path) as tmp:
        shutil.copyfile(src, tmp)
    return {"ops": ops}
