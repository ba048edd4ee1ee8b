"""tflite-fp32 -> TFLite full-integer int8, calibrated on real images (ai-edge-quantizer).

Two files come from the same recipe:
- ``tflite-int8``: integer-only compute, float32 input and output (a QUANTIZE and a
  DEQUANTIZE at the edges);
- ``tflite-int8-io``: the same with int8 input and output, for camera pipelines that feed
  quantized pixels; its input/output scale and zero point are recorded in the manifest.

Every operator computes in integers: weights are int8 (per channel), activations int8,
except inside LayerNorm, whose variance and 1/std statistics are int16. Why int16 there:
in int8, a token's standard deviation can round to the zero point, and TFLite's integer
DIV then aborts ("data[i] != zero_point"). Measured on the bundled emotion model (top-1
agreement with fp32): TensorFlow's converter full-integer file 87.6%, this recipe 91.8%.
The price is CPU speed: the int16 ops and the int8 attention matmuls run in TFLite's
reference kernels rather than XNNPACK (ViT-B/16 in one bench run: 268 ms, against 92 ms
for tflite-fp32 and 30 ms for tflite-int8-dynamic); the file is meant for integer-only
accelerators, and on CPU tflite-int8-dynamic is the fast int8 TFLite variant.

Why no recipe reaches 97% top-1 agreement on emotion-vit (measured on its 655-image
subset, 2026-11-23): every activation in int16 (16x8, still integer) gives 95.9%, and
96.0% with SQRT+DIV rewritten as RSQRT; calibrating on the evaluation images themselves
gives 92.4% for this recipe and 94.7% for all-int16. The int16 softmax alone has a 7%
mean relative error in the first layer. 10.8% of that model's images have a top-1/top-2
logit margin below 0.1, so small integer-kernel errors flip them. Folding the FC biases
into FULLY_CONNECTED changed nothing (91.2%).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.ai_edge_quantize import quantize_tflite

# Tensor names onnx2tf gives LayerNorm's internal tensors ("..._layernorm_var", ...).
LAYERNORM_SCOPE = "(?i).*layernorm.*"


def full_integer_recipe(*, int8_io: bool) -> list[dict]:
    """ai-edge-quantizer recipe: static int8 everywhere, LayerNorm statistics in int16."""
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.recipe import AlgorithmName

    ops = qtyping.TFLOperationName
    manager = recipe_manager.RecipeManager()
    manager.add_static_config(regex=".*", operation_name=ops.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    manager.add_static_config(regex=LAYERNORM_SCOPE, operation_name=ops.ALL_SUPPORTED,
                              activation_num_bits=16, weight_num_bits=8)
    if not int8_io:  # float32 at the model's edges: the quantizer adds QUANTIZE/DEQUANTIZE there
        for edge in (ops.INPUT, ops.OUTPUT):
            manager.add_quantization_config(regex=".*", operation_name=edge, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def convert_tflite_int8(tflite_fp32: str | Path, out_path: str | Path, calibration_nhwc: np.ndarray, *,
                        int8_io: bool = False, calibration_cache: str | Path | None = None) -> dict:
    """Write the calibrated full-integer version of ``tflite_fp32`` to ``out_path``.

    ``calibration_nhwc``: preprocessed calibration images (N x H x W x C float32), disjoint
    from the evaluation images. ``calibration_cache``: folder shared by the two full-integer
    variants, so the second one reuses the first one's calibration.
    """
    from converters.tflite_ops import float_compute_ops, op_precisions
    from converters.onnx2tf_tool import ConversionError

    def integer_only(path: Path) -> None:
        floats = float_compute_ops(path)
        if floats:
            raise ConversionError(f"the quantized file still computes {', '.join(floats)} in float; "
                                  "a full-integer variant must not")

    settings = quantize_tflite(tflite_fp32, out_path, full_integer_recipe(int8_io=int8_io),
                               calibration_nhwc=calibration_nhwc, check=integer_only,
                               calibration_cache=calibration_cache)
    settings["op_precisions"] = op_precisions(out_path)
    settings["float_compute_ops"] = float_compute_ops(out_path)
    settings["calibration_images"] = int(len(calibration_nhwc))
    return settings
