"""tflite-fp32 -> TFLite full-integer file, calibrated on real images (ai-edge-quantizer).

Two files come from the same recipe:
- ``tflite-int8``: integer-only compute, float32 input and output (a QUANTIZE and a
  DEQUANTIZE at the edges);
- ``tflite-int8-io``: the same with int8 input and output, for camera pipelines that feed
  quantized pixels; its input/output scale and zero point are recorded in the manifest.

Weights are int8 (per channel) and every operator computes in integers. Activations are int8
by default (``activations="int8"``), except inside LayerNorm, whose variance and 1/std
statistics are int16, and, in tflite-int8, the classifier's output (the logits), which is
int16. Why int16 in LayerNorm: in int8, a token's standard deviation can round to the zero
point, and TFLite's integer DIV then aborts ("data[i] != zero_point"). Why int16 logits:
int8 logits move in steps of a 256th of their range, so close classes tie or swap;
tflite-int8-io keeps int8 logits, since int8 output is its format.

``activations="int16"`` is TFLite's 16x8 mode: int16 activations everywhere, int8 weights,
still integer-only and the same size (the model's config chooses it per model:
``full_integer_activations``). It is for models whose int8 activations miss the agreement
budget; the price is that int8-only accelerators cannot run it, and on CPU its ops run in
TFLite's reference kernels, as the int8 file's attention does anyway.

Measured on the bundled emotion model over FER2013 test (3589 images; top-1 agreement with
fp32), with every range calibrated as the min/max over all 512 calibration images
(``calibrate_min_max``): int8 activations as above 95.9% (tflite-int8-io 95.7%); int8 with
every ADD also int16 96.5%, with ADD, FULLY_CONNECTED, BATCH_MATMUL, SOFTMAX and GELU int16
97.4%; every activation int16 99.3% (tflite-int8-io 98.3%, of which its int8 logits alone
cost about 1.3 points). Leaving one op type in int8 and the rest int16 costs 1.0-1.4 points
for FULLY_CONNECTED, BATCH_MATMUL or SOFTMAX, 3 points for ADD, nothing for GELU; promoting
one transformer block or one kind of tensor (attention scores, residual stream, MLP) to int16
gains at most 0.3: the int8 error is spread over the whole network, and this model has
10.8% of its images within 0.1 logit of a tie. Folding the FC biases into FULLY_CONNECTED
(95.7%) and percentile ranges (95.2-95.8%) did not help. Before the min/max fix (the
quantizer's moving-average ranges) the int8 file agreed on 93.8% and even all-int16 only
on 94.9%; TensorFlow's converter full-integer file on 88.1%.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from converters.ai_edge_quantize import CALIBRATION_METHOD, quantize_tflite
from converters.tflite_graph import reciprocal_sqrt

# Tensor names onnx2tf gives LayerNorm's internal tensors ("..._layernorm_var", ...).
LAYERNORM_SCOPE = "(?i).*layernorm.*"


def output_scope(output_names: list[str]) -> str:
    """Regex for the ops that write the model's outputs (ai-edge-quantizer names an op's scope
    after its output tensors, followed by ';')."""
    return "^(" + "|".join(re.escape(name) for name in output_names) + ");$"


ACTIVATION_BITS = {"int8": 8, "int16": 16}


def full_integer_recipe(*, int8_io: bool, output_names: list[str] | None = None,
                        activations: str = "int8", divisor_names: list[str] | None = None) -> list[dict]:
    """ai-edge-quantizer recipe for a full-integer file with int8 weights.

    ``activations="int8"``: int8 activations, LayerNorm statistics in int16, and with float32
    I/O (``int8_io=False``) the classifier writing ``output_names`` with int16 activations.
    ``activations="int16"``: every activation int16 (16x8). With ``int8_io`` the model's
    input and output tensors are int8 either way. ``divisor_names``: outputs of the ops that
    compute a run-time divisor (``runtime_divisor_ops``), int16 as LayerNorm's statistics are.
    """
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.recipe import AlgorithmName

    if activations not in ACTIVATION_BITS:
        raise ValueError(f"activations must be one of {sorted(ACTIVATION_BITS)}, not {activations!r}")
    ops = qtyping.TFLOperationName
    manager = recipe_manager.RecipeManager()
    manager.add_static_config(regex=".*", operation_name=ops.ALL_SUPPORTED,
                              activation_num_bits=ACTIVATION_BITS[activations], weight_num_bits=8)
    if activations == "int8":
        manager.add_static_config(regex=LAYERNORM_SCOPE, operation_name=ops.ALL_SUPPORTED,
                                  activation_num_bits=16, weight_num_bits=8)
        if divisor_names:
            manager.add_static_config(regex=output_scope(divisor_names), operation_name=ops.ALL_SUPPORTED,
                                      activation_num_bits=16, weight_num_bits=8)
        if not int8_io and output_names:
            # int8 logits have steps of range/256: close classes become ties or swap. Scoped
            # to FULLY_CONNECTED (the classifier), not ALL_SUPPORTED: that would also match
            # the graph's OUTPUT and make the file's output int16 instead of float32.
            manager.add_static_config(regex=output_scope(output_names), operation_name=ops.FULLY_CONNECTED,
                                      activation_num_bits=16, weight_num_bits=8)
    for edge in (ops.INPUT, ops.OUTPUT):
        if int8_io:
            manager.add_static_config(regex=".*", operation_name=edge, activation_num_bits=8, weight_num_bits=8)
        else:  # float32 at the model's edges: the quantizer adds QUANTIZE/DEQUANTIZE there
            manager.add_quantization_config(regex=".*", operation_name=edge, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def convert_tflite_int8(tflite_fp32: str | Path, out_path: str | Path, calibration_nhwc: np.ndarray, *,
                        int8_io: bool = False, activations: str = "int8",
                        calibration_cache: str | Path | None = None) -> dict:
    """Write the calibrated full-integer version of ``tflite_fp32`` to ``out_path``.

    ``calibration_nhwc``: preprocessed calibration images (N x H x W x C float32), disjoint
    from the evaluation images. ``activations``: "int8", or "int16" for TFLite's 16x8 mode
    (see the module docstring). ``calibration_cache``: folder shared by the two full-integer
    variants, so the second one reuses the first one's calibration.
    """
    from converters.onnx2tf_tool import ConversionError
    from converters.tflite_ops import float_ops_in, op_precisions

    precisions: dict[str, int] = {}

    def integer_only(path: Path) -> None:
        precisions.update(op_precisions(path))  # read once, kept for the manifest
        floats = float_ops_in(precisions)
        if floats:
            raise ConversionError(f"the quantized file still computes {', '.join(floats)} in float; "
                                  "a full-integer variant must not")

    from ai_edge_litert.interpreter import Interpreter

    outputs = [d["name"] for d in Interpreter(model_path=str(tflite_fp32)).get_output_details()]
    source = Path(tflite_fp32).read_bytes()
    rsqrt = 0
    if activations == "int8":
        # 1/std as RSQRT, not DIV(1, SQRT): see converters.tflite_graph.reciprocal_sqrt. Only with
        # int8 activations, where the DIV aborted (MobileViTV2); measured on gender-vit, agreement
        # unchanged (99.0% on its subset). With int16 activations emotion-vit's files agreed on
        # 99.1% with DIV and 98.3% with RSQRT, so 16x8 keeps the DIV.
        source, rsqrt = reciprocal_sqrt(source)
    divisors = runtime_divisor_ops(source)
    recipe = full_integer_recipe(int8_io=int8_io, output_names=outputs, activations=activations,
                                 divisor_names=divisors)
    with tempfile.TemporaryDirectory(prefix="edgeport-rsqrt-") as scratch:
        if rsqrt:
            tflite_fp32 = Path(scratch) / "model_rsqrt.tflite"
            tflite_fp32.write_bytes(source)
        settings = quantize_tflite(tflite_fp32, out_path, recipe, calibration_nhwc=calibration_nhwc,
                                   check=integer_only, calibration_cache=calibration_cache)
    settings["op_precisions"] = precisions
    settings["float_compute_ops"] = float_ops_in(precisions)
    settings["calibration_images"] = int(len(calibration_nhwc))
    settings["activations"] = activations
    settings["calibration_method"] = CALIBRATION_METHOD
    settings["int16_divisor_ops"] = len(divisors)
    settings["reciprocal_sqrt"] = rsqrt
    return settings


def runtime_divisor_ops(tflite: bytes, depth: int = 6) -> list[str]:
    """Output names of each DIV with a computed divisor (or RSQRT) and of the ops that compute it.

    Normalizations (LayerNorm, InstanceNorm/GroupNorm, RMSNorm) divide by a standard deviation
    computed per token or channel; in int8 it can round to the zero point, and TFLite's integer
    DIV aborts ("data[i] != zero_point": MobileViTV2's GroupNorm, BEiT's LayerNorm). Found in
    the graph, whatever the op is called: the DIV and up to ``depth`` ops back along its
    divisor (SQRT <- ADD eps <- MEAN <- squares).
    """
    from converters.tflite_graph import _builtin, _constant, _load
    from converters.tflite_ops import tflite_schema

    s = tflite_schema()
    model = _load(tflite)
    names: list[str] = []
    for graph in model.subgraphs:
        producers = {out: op for op in graph.operators for out in op.outputs}
        for op in graph.operators:
            code = _builtin(model, op)
            if code == s.BuiltinOperator.RSQRT:
                tensor = op.inputs[0]
            elif code == s.BuiltinOperator.DIV and _constant(model, graph.tensors[op.inputs[1]]) is None:
                tensor = op.inputs[1]
            else:
                continue
            chain = [op]
            for _ in range(depth):
                producer = producers.get(tensor)
                if producer is None:
                    break
                chain.append(producer)
                if _builtin(model, producer) in (s.BuiltinOperator.MEAN, s.BuiltinOperator.SUM):
                    break
                tensor = producer.inputs[0]
            names += [graph.tensors[o.outputs[0]].name.decode() for o in chain]
    return sorted(set(names))
