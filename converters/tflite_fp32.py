"""ONNX -> TFLite fp32 (onnx2tf: flatbuffer_direct backend first, TensorFlow backend as fallback).

flatbuffer_direct writes the .tflite straight from the ONNX graph: on ViT-B/16 about 16 s
and 3 GB, against minutes and 12+ GB for onnx2tf's TensorFlow backend (Keras graph, then
TensorFlow's TFLite converter). When flatbuffer_direct fails on a model (an op it cannot
lower, or a Flex/custom op in its file), the variant falls back to the TensorFlow backend
rather than failing; the manifest records which backend made the file and why.

Linear layers come out of flatbuffer_direct as BATCH_MATMUL; they are rewritten as
FULLY_CONNECTED (converters.tflite_graph) so that the quantized TFLite variants made from
this file get per-channel int8 and fp16 weights. A MaxPool's border padding with the lowest
float (ResNet's stem) becomes a zero PAD where the input is a ReLU's output, which gives the
same maxima and which ai-edge-quantizer can quantize, and onnx2tf's spelled-out HardSwish
(LeViT) becomes the HARD_SWISH builtin again, which it can quantize too (converters.tflite_graph).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from converters.atomic import atomic_path
from converters.onnx2tf_tool import ConversionError, onnx2tf_args, prepare_onnx2tf_run, run_onnx2tf
from converters.tflite_graph import batch_matmul_to_fully_connected, hard_swish_from_parts, max_pool_padding_to_zeros
from converters.tflite_ops import require_builtin_ops

BACKENDS = ("flatbuffer_direct", "tf_converter")


def convert_tflite_fp32(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    sample_images: Sequence[Path],
    work_dir: str | Path,
) -> dict:
    """Convert ``onnx_path`` to a float32 ``.tflite`` at ``out_path`` (NHWC input, batch 1).

    Returns {"ops": [...], "backend": ..., ...}; raises ConversionError (naming both
    backends' errors) when neither backend gives a builtin-only file.
    """
    errors: list[str] = []
    for backend in BACKENDS:
        try:
            settings = _convert_with(backend, Path(onnx_path), Path(out_path), sample_images, Path(work_dir))
        except ConversionError as exc:
            errors.append(f"{backend}: {exc}")
            continue
        settings["backend"] = f"onnx2tf {backend}"
        if errors:
            settings["fallback_reason"] = errors[0][:2000]
        return settings
    raise ConversionError("no onnx2tf backend produced a builtin-only TFLite file:\n" + "\n".join(errors))


def _convert_with(backend: str, onnx_path: Path, out_path: Path, sample_images: Sequence[Path],
                  work: Path) -> dict:
    static, out_dir = prepare_onnx2tf_run(onnx_path, work, sample_images, f"tflite-fp32-{backend}")
    run_onnx2tf(onnx2tf_args(static, out_dir, backend), work_dir=work,
                log_path=work / f"onnx2tf-tflite-fp32-{backend}.log")
    produced = out_dir / f"{static.stem}_float32.tflite"
    if not produced.exists():
        raise ConversionError(f"onnx2tf wrote no {produced.name} in {out_dir}")
    with atomic_path(out_path) as tmp:
        data, rewritten = batch_matmul_to_fully_connected(produced.read_bytes())
        data, pads = max_pool_padding_to_zeros(data)
        data, swishes = hard_swish_from_parts(data)
        Path(tmp).write_bytes(data)
        ops = require_builtin_ops(tmp)
    return {"ops": ops, "linear_layers_as_fully_connected": rewritten, "max_pool_paddings_as_zeros": pads,
            "hard_swish_fused": swishes}
