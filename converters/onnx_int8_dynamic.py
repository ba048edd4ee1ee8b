"""ONNX fp32 -> ONNX dynamic int8: int8 weights, activations quantized at run time.

Only MatMul and Gemm are quantized. The patch-embedding Conv stays float because ONNX
Runtime's CPU provider has no ``ConvInteger`` kernel; LayerNorm, GELU and Softmax stay
float because dynamic quantization does not touch them.
"""
from __future__ import annotations

from pathlib import Path

from edgeport.converters.atomic import atomic_path
from edgeport.runtimes.machine import has_vnni


def convert_onnx_int8_dynamic(onnx_path: str | Path, out_path: str | Path,
                              *, reduce_range: bool | None = None) -> tuple[Path, dict]:
    """Write a dynamically quantized copy of ``onnx_path``.

    ``reduce_range`` (7-bit weights) avoids u8s8 saturation on x86 CPUs without VNNI;
    by default it is on exactly when this CPU lacks VNNI. Returns (path, settings used).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if reduce_range is None:
        reduce_range = not has_vnni()
    settings = {"op_types": ["MatMul", "Gemm"], "weight_type": "int8", "per_channel": False,
                "reduce_range": reduce_range}
    with atomic_path(out_path) as tmp:
        quantize_dynamic(str(onnx_path), str(tmp), op_types_to_quantize=settings["op_types"],
                         weight_type=QuantType.QInt8, per_channel=False, reduce_range=reduce_range)
    return Path(out_path), settings
