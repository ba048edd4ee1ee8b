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

With int8 activations, the precision search (``converters.precision_search``) then raises
whole op kinds to int16 until held-out calibration images meet the variant's budget; the
file then has ``activations = "int8+int16"``. ``activations="int16"`` is TFLite's 16x8 mode:
int16 activations everywhere, int8 weights, still integer-only and the same size, without a
search (an override in the model's config: ``full_integer_activations``). The price of
int16 is that int8-only accelerators cannot run the file, and on CPU its ops run in
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

import itertools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.converters.ai_edge_quantize import CALIBRATION_METHOD, quantize_tflite
from edgeport.converters.atomic import atomic_path
from edgeport.converters.precision_search import Holdout, Target, search_precision
from edgeport.converters.tflite_graph import integer_forms, reciprocal_sqrt

SENSITIVITY_IMAGES = 16  # held-out images each op's added error is measured on (at most)

# Tensor names onnx2tf gives LayerNorm's internal tensors ("..._layernorm_var", ...).
LAYERNORM_SCOPE = "(?i).*layernorm.*"


def output_scope(output_names: list[str]) -> str:
    """Regex for the ops that write the model's outputs (ai-edge-quantizer names an op's scope
    after its output tensors, followed by ';')."""
    return "^(" + "|".join(re.escape(name) for name in output_names) + ");$"


ACTIVATION_BITS = {"int8": 8, "int16": 16}


def full_integer_recipe(*, int8_io: bool, output_names: list[str] | None = None,
                        activations: str = "int8", divisor_names: list[str] | None = None,
                        int16_names: list[str] | None = None) -> list[dict]:
    """ai-edge-quantizer recipe for a full-integer file with int8 weights.

    ``activations="int8"``: int8 activations, LayerNorm statistics in int16, and with float32
    I/O (``int8_io=False``) the classifier writing ``output_names`` with int16 activations.
    ``activations="int16"``: every activation int16 (16x8). With ``int8_io`` the model's
    input and output tensors are int8 either way. ``divisor_names``: outputs of the ops that
    compute a run-time divisor (``runtime_divisor_ops``), int16 as LayerNorm's statistics are.
    ``int16_names``: outputs of the ops the precision search raised to int16 activations.
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
        for names in (divisor_names, int16_names):
            if names:
                manager.add_static_config(regex=output_scope(names), operation_name=ops.ALL_SUPPORTED,
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
                        calibration_cache: str | Path | None = None, holdout: Holdout | None = None,
                        target: Target | None = None, log: Callable[[str], None] = print,
                        start_kinds: Sequence[str] = (), start_from: str | None = None) -> dict:
    """Write the calibrated full-integer version of ``tflite_fp32`` to ``out_path``.

    ``calibration_nhwc``: preprocessed calibration images (N x H x W x C float32), disjoint
    from the evaluation images. ``activations``: "int8", or "int16" for TFLite's 16x8 mode
    (see the module docstring). ``calibration_cache``: folder shared by the two full-integer
    variants, so the second one reuses the first one's calibration. With int8 activations,
    a ``holdout`` (held-out calibration images, NCHW, and the fp32 file's logits on them)
    and a ``target``, the precision search raises single ops to int16 until the held-out
    images meet the target (converters.precision_search; ``op_sensitivity``).
    ``start_kinds``: op kinds the search's first round already raises (``start_from`` says
    whose choice they were, for the manifest): tflite-int8-io starts from tflite-int8's.
    """
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.converters.onnx2tf_tool import ConversionError
    from edgeport.converters.tflite_ops import float_ops_in, op_precisions

    def integer_only(path: Path) -> None:
        floats = float_ops_in(op_precisions(path))
        if floats:
            raise ConversionError(f"the quantized file still computes {', '.join(floats)} in float; "
                                  "a full-integer variant must not")

    outputs = [d["name"] for d in Interpreter(model_path=str(tflite_fp32)).get_output_details()]
    source = Path(tflite_fp32).read_bytes()
    rsqrt = 0
    if activations == "int8":
        # 1/std as RSQRT, not DIV(1, SQRT): see converters.tflite_graph.reciprocal_sqrt. Only with
        # int8 activations, where the DIV aborted (MobileViTV2); measured on gender-vit, agreement
        # unchanged (99.0% on its subset). With int16 activations emotion-vit's files agreed on
        # 99.1% with DIV and 98.3% with RSQRT, so 16x8 keeps the DIV.
        source, rsqrt = reciprocal_sqrt(source)
    # SHAPE, REDUCE_MAX and TILE spelled with ops the quantizer makes integer (exact in float:
    # converters.tflite_graph.integer_forms); without it Hiera and SwiftFormer had no full-integer file
    source, rewrites = integer_forms(source)
    divisors = runtime_divisor_ops(source)
    search = None
    with tempfile.TemporaryDirectory(prefix="edgeport-int8-") as scratch:
        src = Path(tflite_fp32)
        if rsqrt or any(rewrites.values()):
            src = Path(scratch) / "model_rewritten.tflite"
            src.write_bytes(source)
        rounds = itertools.count()
        info: dict = {}

        def build(raised: list[str]) -> Path:
            dest = Path(scratch) / f"round{next(rounds)}.tflite"
            recipe = full_integer_recipe(int8_io=int8_io, output_names=outputs, activations=activations,
                                         divisor_names=divisors, int16_names=raised)
            info.update(quantize_tflite(src, dest, recipe, calibration_nhwc=calibration_nhwc, check=integer_only,
                                        calibration_cache=calibration_cache))
            return dest

        if activations == "int8" and holdout is not None and target is not None:
            # Raised by op kind (every ADD, every SOFTMAX, ...), not op by op: measured on emotion-vit,
            # raising single ops ranked by the error each adds gained nothing until all 252 were
            # int16 (93.4% -> 94.5% held-out agreement at 127 of them), while raising whole kinds
            # reached 97.4% on FER2013 test with ADD, FULLY_CONNECTED, BATCH_MATMUL, SOFTMAX and
            # GELU (module docstring): the int8 error of one kind is spread over the network.
            kinds = raisable_ops(source, set(divisors) | set(outputs))
            ops_of = lambda raised_kinds: [n for k in raised_kinds for n in kinds[k]]  # noqa: E731

            def kind_sensitivity(path: Path, raised_kinds: list[str], units: list[list[str]]) -> list[float]:
                per_op = op_sensitivity(src, path, ops_of([k for k in kinds if k not in raised_kinds]), holdout)
                return [sum(max(per_op.get(n, 0.0), 0.0) for n in ops_of(unit)) for unit in units]

            search = search_precision(list(kinds), lambda raised_kinds: build(ops_of(raised_kinds)),
                                      lambda path: iter_tflite(path, holdout.inputs), kind_sensitivity,
                                      holdout, target, unit="op kinds", log=log,
                                      start=[k for k in start_kinds if k in kinds])
            if start_kinds:
                search.started_from = start_from
            chosen, raised = search.path, ops_of([r["name"] for r in search.raised])
            for row in search.raised:
                row["ops"] = len(kinds[row["name"]])
        else:
            chosen, raised = build([]), []
        with atomic_path(out_path) as tmp:
            Path(tmp).write_bytes(chosen.read_bytes())
    settings = dict(info)
    precisions = op_precisions(Path(out_path))
    settings["op_precisions"] = precisions
    settings["float_compute_ops"] = float_ops_in(precisions)
    settings["calibration_images"] = int(len(calibration_nhwc))
    # "int8+int16" when the search raised op kinds: an int8-only accelerator cannot run the file
    settings["activations"] = "int8+int16" if activations == "int8" and raised else activations
    settings["calibration_method"] = CALIBRATION_METHOD
    settings["int16_divisor_ops"] = len(divisors)
    settings["int16_ops"] = raised
    settings["reciprocal_sqrt"] = rsqrt
    settings["integer_forms"] = {k: v for k, v in rewrites.items() if v}
    if search is not None:
        settings["precision_search"] = search.to_dict(holdout, target, "int16 activations")
    return settings


class FullIntegerHint:
    """What tflite-int8's precision search chose, for tflite-int8-io's to start from.

    The two files differ only in their int8 input and output (more rounding at the edges), so the
    op kinds tflite-int8 needed int16 are where tflite-int8-io's search starts: measured on the
    bundled models, the -io search's all-int8 start repeated the 4-5 rounds that had just led
    tflite-int8 to its choice (gender-vit: 9 of 13 kinds for tflite-int8, 12 for -io). Kept
    beside the shared calibration statistics, keyed like them (the fp32 file and the images),
    and only from a search that passed on its held-out images.
    """

    def __init__(self, folder: Path, fp32: Path, calibration_nhwc: np.ndarray) -> None:
        from edgeport.converters.ai_edge_quantize import _calibration_key

        self.path = folder / f"tflite-int8-search-{_calibration_key(fp32, calibration_nhwc)}.json"

    def read(self) -> list[str]:
        """The op kinds to start from (none when tflite-int8 did not run here or did not pass)."""
        try:
            return [str(k) for k in json.loads(self.path.read_text())["raised_kinds"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def write(self, search: dict[str, Any] | None) -> None:
        """Keep tflite-int8's choice (``settings.precision_search``), or forget it when it did not pass."""
        if not search or not search.get("passed_on_holdout"):
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"raised_kinds": [row["name"] for row in search["raised"]]}))


def run_tflite(path: Path, inputs_nchw: np.ndarray) -> np.ndarray:
    """Logits of a .tflite file on NCHW float images (int8 I/O quantized as validation does)."""
    return np.concatenate(list(iter_tflite(path, inputs_nchw)))


def iter_tflite(path: Path, inputs_nchw: np.ndarray, chunk: int = 16) -> Iterator[np.ndarray]:
    """``run_tflite``'s logits ``chunk`` images at a time, for a judge that may stop early (a
    chunk of a small batch-1 file runs on one interpreter per core: TFLiteRunner's lanes)."""
    from edgeport.runtimes.tflite_runner import TFLiteRunner

    with TFLiteRunner(path, threads=os.cpu_count() or 1) as runner:
        for start in range(0, len(inputs_nchw), chunk):
            yield runner.infer(inputs_nchw[start:start + chunk])


def raisable_ops(tflite: bytes, exclude: set[str]) -> dict[str, list[str]]:
    """Op kind (FULLY_CONNECTED, ADD, ...) -> output names of the ops of that kind whose int8
    activations the search may raise to int16, in graph order.

    Every op with a computed float output, except those already int16 or writing the
    model's output (``exclude``): raising the output op would change the file's I/O type.
    """
    from edgeport.converters.tflite_graph import _constant, _load
    from edgeport.converters.tflite_ops import tflite_schema

    float32 = tflite_schema().TensorType.FLOAT32
    model = _load(tflite)
    names: list[str] = []
    kinds: dict[str, list[str]] = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            if op.outputs is None or not len(op.outputs):
                continue
            tensor = graph.tensors[op.outputs[0]]
            if tensor.type != float32 or _constant(model, tensor) is not None:
                continue
            name = tensor.name.decode()
            if name not in exclude and name not in names:
                names.append(name)
                kinds.setdefault(_op_name(model, op), []).append(name)
    return kinds


def op_sensitivity(fp32: Path, quantized: Path, names: list[str], holdout: Holdout) -> dict[str, float]:
    """The error each op adds in ``quantized``: the relative error of its output against fp32,
    less the largest relative error among its inputs (what reached it).

    One run of each file with every tensor kept (``experimental_preserve_all_tensors``): the
    TFLite quantizer has to run again for every change of recipe, so NNCF's ranking (each
    op raised alone, re-measured) would cost one quantization per op; this costs two runs.
    """
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.runtimes.tflite_runner import _quantize as quantize_input

    images, _ = holdout.subset(SENSITIVITY_IMAGES)
    nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1), np.float32)
    ref = Interpreter(model_path=str(fp32), experimental_preserve_all_tensors=True)
    qnt = Interpreter(model_path=str(quantized), experimental_preserve_all_tensors=True)
    ref.allocate_tensors()
    qnt.allocate_tensors()
    ref_index = {d["name"]: d["index"] for d in ref.get_tensor_details()}
    q_details = {d["name"]: d for d in qnt.get_tensor_details()}
    wanted = set(names)
    inputs_of: dict[str, list[str]] = {}
    tensors = ref.get_tensor_details()
    for op in ref._get_ops_details():
        if not len(op["outputs"]):
            continue
        out = tensors[op["outputs"][0]]["name"]
        if out in wanted:
            inputs_of[out] = [tensors[i]["name"] for i in op["inputs"] if i >= 0]
    track = sorted(wanted | {i for ins in inputs_of.values() for i in ins})
    track = [t for t in track if t in ref_index and t in q_details]
    num = dict.fromkeys(track, 0.0)
    den = dict.fromkeys(track, 0.0)
    q_in = qnt.get_input_details()[0]
    for image in nhwc:
        ref.set_tensor(ref.get_input_details()[0]["index"], image[None])
        ref.invoke()
        qnt.set_tensor(q_in["index"], quantize_input(image[None], q_in))
        qnt.invoke()
        for t in track:
            a = ref.get_tensor(ref_index[t]).astype(np.float64)
            b = _dequantized(qnt.get_tensor(q_details[t]["index"]), q_details[t])
            if b is None or a.shape != b.shape:
                continue
            num[t] += float(np.sum((a - b) ** 2))
            den[t] += float(np.sum(a ** 2))
    rel = {t: (num[t] / den[t]) ** 0.5 for t in track if den[t] > 0}
    return {name: rel[name] - max([rel.get(i, 0.0) for i in inputs_of.get(name, [])], default=0.0)
            for name in names if name in rel}


def _op_name(model, op) -> str:
    from edgeport.converters.tflite_graph import _builtin
    from edgeport.converters.tflite_ops import tflite_schema

    codes = {v: k for k, v in vars(tflite_schema().BuiltinOperator).items() if not k.startswith("_")}
    return codes.get(_builtin(model, op), str(_builtin(model, op)))


def _dequantized(value: np.ndarray, detail: dict) -> np.ndarray | None:
    """A tensor of the quantized file as float64 (per-tensor scale; None for per-axis ones: weights)."""
    if np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float64)
    params = detail.get("quantization_parameters") or {}
    scales, zeros = params.get("scales"), params.get("zero_points")
    if scales is None or len(scales) != 1:
        return None
    return (value.astype(np.float64) - float(zeros[0])) * float(scales[0])


def runtime_divisor_ops(tflite: bytes, depth: int = 6) -> list[str]:
    """Output names of each DIV with a computed divisor (or RSQRT) and of the ops that compute it.

    Normalizations (LayerNorm, InstanceNorm/GroupNorm, RMSNorm) divide by a standard deviation
    computed per token or channel; in int8 it can round to the zero point, and TFLite's integer
    DIV aborts ("data[i] != zero_point": MobileViTV2's GroupNorm, BEiT's LayerNorm). Found in
    the graph, whatever the op is called: the DIV and up to ``depth`` ops back along its
    divisor (SQRT <- ADD eps <- MEAN <- squares).
    """
    from edgeport.converters.tflite_graph import _builtin, _constant, _load
    from edgeport.converters.tflite_ops import tflite_schema

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
