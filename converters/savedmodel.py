"""ONNX -> TensorFlow SavedModel fp32 (onnx2tf, TensorFlow converter backend).

onnx2tf builds a Keras graph from the batch-1 ONNX model and saves it with a
``serving_default`` signature; the run stops there (see onnx2tf_tool's savedmodel_only),
because the TFLite files come from the flatbuffer_direct backend and ai-edge-quantizer.
"""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from edgeport.converters.atomic import atomic_path
from edgeport.converters.onnx2tf_tool import ConversionError, onnx2tf_args, prepare_onnx2tf_run, run_onnx2tf


def convert_savedmodel(onnx_path: str | Path, out_dir: str | Path, *, sample_images: Sequence[Path],
                       work_dir: str | Path) -> dict:
    """Convert ``onnx_path`` to a SavedModel folder at ``out_dir`` (NHWC input, batch 1)."""
    work = Path(work_dir)
    static, produced = prepare_onnx2tf_run(Path(onnx_path), work, sample_images, "savedmodel")
    # -osd: write the serving_default signature.
    run_onnx2tf(onnx2tf_args(static, produced, "tf_converter", "-osd"),
                work_dir=work, log_path=work / "onnx2tf-savedmodel.log", savedmodel_only=True)
    if not (produced / "saved_model.pb").exists():
        raise ConversionError(f"onnx2tf wrote no saved_model.pb in {produced} (log: {work / 'onnx2tf-savedmodel.log'})")
    with atomic_path(out_dir, directory=True) as tmp_dir:
        shutil.copytree(produced, tmp_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.tflite", "*.json", "*.fbs", "*.py"))
    return {"backend": "onnx2tf tf_converter (SavedModel only)"}
