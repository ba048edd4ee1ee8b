"""tflite-fp32 -> TFLite dynamic-range int8 (ai-edge-quantizer ``dynamic_wi8_afp32``).

int8 per-channel weights; activations stay float32 in the file and are quantized at run
time, so no calibration is needed.
"""
from __future__ import annotations

from pathlib import Path

from edgeport.converters.ai_edge_quantize import quantize_tflite


def convert_tflite_int8_dynamic(tflite_fp32: str | Path, out_path: str | Path) -> dict:
    """Write the dynamic-range int8 version of ``tflite_fp32`` to ``out_path``."""
    from ai_edge_quantizer import recipe

    return quantize_tflite(tflite_fp32, out_path, recipe.dynamic_wi8_afp32())
