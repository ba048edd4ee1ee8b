"""ONNX -> TensorFlow SavedModel fp32 (onnx2tf, TensorFlow converter backend)."""
from __future__ import annotations

import shutil
from pathlib import Path

from converters.atomic import atomic_path


def copy_savedmodel(tf_outputs: Path, out_dir: str | Path) -> Path:
    """Copy the SavedModel of a ``tensorflow_run.tensorflow_outputs`` folder to ``out_dir``.

    Input is NHWC at batch 1 (onnx2tf's layout), signature ``serving_default``.
    """
    with atomic_path(out_dir, directory=True) as tmp_dir:
        shutil.copytree(tf_outputs, tmp_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.tflite", ".complete", "*.json", "*.fbs", "*.py"))
    return Path(out_dir)
