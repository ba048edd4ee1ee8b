"""ONNX -> TFLite fp32 (onnx2tf, flatbuffer_direct backend: fast, builtin GELU).

Linear layers come out of onnx2tf as BATCH_MATMUL; they are rewritten as FULLY_CONNECTED
(converters.tflite_graph) so that the quantized TFLite variants made from this file get
per-channel int8 and fp16 weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from converters.atomic import atomic_path
from converters.onnx2tf_tool import ConversionError, prepare_onnx2tf_run, run_onnx2tf
from converters.tflite_graph import batch_matmul_to_fully_connected
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
    static, out_dir = prepare_onnx2tf_run(Path(onnx_path), work, sample_images, "tflite-fp32")
    run_onnx2tf(
        ["-i", str(static), "-o", str(out_dir), "-tb", "flatbuffer_direct", "-doem", "-nuo", "-v", "warn"],
        work_dir=work,
        log_path=work / "onnx2tf-tflite-fp32.log",
    )
    produced = out_dir / f"{static.stem}_float32.tflite"
    if not produced.exists():
        raise ConversionError(f"onnx2tf wrote no {produced.name} in {out_dir}")
    with atomic_path(out_path) as tmp:
        data, rewritten = batch_matmul_to_fully_connected(produced.read_bytes())
        Path(tmp).write_bytes(data)
        ops = require_builtin_ops(tmp)
    return {"ops": ops, "linear_layers_as_fully_connected": rewritten}
