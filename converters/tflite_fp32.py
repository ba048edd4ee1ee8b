"""ONNX -> TFLite fp32 (onnx2tf, flatbuffer_direct backend: fast, builtin GELU)."""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from converters.atomic import atomic_path
from converters.onnx2tf_tool import (
    ConversionError,
    run_onnx2tf,
    shared_batch1_model,
    write_onnx2tf_sample,
)
from converters.tflite_ops import require_builtin_ops


def convert_tflite_fp32(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    sample_images: Sequence[Path],
    work_dir: str | Path,
) -> dict:
    """Convert ``onnx_path`` to a float32 ``.tflite`` at ``out_path`` (NHWC input, batch 1).

    Returns {"ops": [...]}; raises ConversionError if the file holds non-builtin ops.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    write_onnx2tf_sample(sample_images, work)
    static = shared_batch1_model(Path(onnx_path), work.parent)
    out_dir = work / "tflite-fp32"
    shutil.rmtree(out_dir, ignore_errors=True)
    run_onnx2tf(
        ["-i", str(static), "-o", str(out_dir), "-tb", "flatbuffer_direct", "-doem", "-nuo", "-v", "warn"],
        work_dir=work,
        log_path=work / "onnx2tf-tflite-fp32.log",
    )
    produced = out_dir / f"{static.stem}_float32.tflite"
    if not produced.exists():
        raise ConversionError(f"onnx2tf wrote no {produced.name} in {out_dir}")
    ops = require_builtin_ops(produced)
    with atomic_path(out_path) as tmp:
        shutil.copyfile(produced, tmp)
    return {"ops": ops}
