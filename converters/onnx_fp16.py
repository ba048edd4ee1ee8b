"""ONNX fp32 -> ONNX fp16: fp16 weights and compute, float32 inputs and outputs.

Uses onnxruntime's own float16 converter (onnxruntime.transformers.float16), which keeps
ops without fp16 kernels in float32 and inserts the casts.
"""
from __future__ import annotations

from pathlib import Path

from edgeport.converters.atomic import atomic_path


def convert_onnx_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Write an fp16 copy of ``onnx_path`` whose input and output stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))
    return Path(out_path)
