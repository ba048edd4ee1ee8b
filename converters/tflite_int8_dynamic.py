"""tflite-fp32 -> TFLite dynamic-range int8 (ai-edge-quantizer ``dynamic_wi8_afp32``).

int8 per-channel weights; activations stay float32 in the file and are quantized at run
time, so no calibration is needed.

Each Linear layer's bias, an ADD after its FULLY_CONNECTED in the fp32 file, is first taken into
the FULLY_CONNECTED (converters.tflite_graph.fully_connected_bias): XNNPACK adds it as its int8
GEMM writes the output instead of in a second pass. gender-vit's file ran 5% faster an image on
one thread (782 against 821 us, medians of 6 alternating runs), its logits within 0.004 of the
unfolded file's. Only here: the full-integer files (tflite-int8, -io) ran 3x slower with the bias
in their 16x8 FULLY_CONNECTEDs (38.0 against 12.3 ms), and tflite-fp16 no faster (2.01 against
2.02 ms); so tflite-fp32, the file every TFLite variant starts from, keeps its ADDs.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from edgeport.converters.ai_edge_quantize import quantize_tflite
from edgeport.converters.tflite_graph import fully_connected_bias


def convert_tflite_int8_dynamic(tflite_fp32: str | Path, out_path: str | Path) -> dict:
    """Write the dynamic-range int8 version of ``tflite_fp32`` to ``out_path``."""
    from ai_edge_quantizer import recipe

    data, biases = fully_connected_bias(Path(tflite_fp32).read_bytes())
    if not biases:
        return {**quantize_tflite(tflite_fp32, out_path, recipe.dynamic_wi8_afp32()),
                "linear_biases_in_fully_connected": 0}
    with tempfile.TemporaryDirectory(prefix="edgeport-int8-dynamic-") as scratch:
        source = Path(scratch) / "model_fp32_biases_fused.tflite"
        source.write_bytes(data)
        settings = quantize_tflite(source, out_path, recipe.dynamic_wi8_afp32())
    return {**settings, "linear_biases_in_fully_connected": biases}
