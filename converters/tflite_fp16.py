"""tflite-fp32 -> TFLite fp16: float16 weights, float32 compute and I/O (ai-edge-quantizer).

Weights of FULLY_CONNECTED and CONV_2D ops are stored as float16 behind a DEQUANTIZE (the
layout of TensorFlow's fp16 post-training quantization), halving the file; the runtime
expands them once when the interpreter is prepared.
"""
from __future__ import annotations

from pathlib import Path

from edgeport.converters.ai_edge_quantize import quantize_tflite


def fp16_recipe() -> list[dict]:
    """ai-edge-quantizer recipe: float casting of every supported weight to 16 bits."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.recipe import AlgorithmName

    manager = recipe_manager.RecipeManager()
    manager.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                   num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    return manager.get_quantization_recipe()


def convert_tflite_fp16(tflite_fp32: str | Path, out_path: str | Path) -> dict:
    """Write the fp16-weight version of ``tflite_fp32`` to ``out_path``; returns manifest settings."""
    return quantize_tflite(tflite_fp32, out_path, fp16_recipe())
