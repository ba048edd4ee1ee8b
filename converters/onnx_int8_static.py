"""ONNX fp32 -> ONNX static int8 (QDQ), calibrated on real images, float where measurement says so.

Per-channel int8 weights and uint8 activations on every MatMul, Gemm and Conv (onnxruntime's
QDQ quantizer; LayerNorm, GELU, Softmax and the residual Adds are not quantized ops here and
stay float). Which of those layers stay float is not a list of names: the precision search
(``converters.precision_search``) starts with all of them in int8 and, while the held-out
calibration images miss the variant's budget, returns the most sensitive ones to float.

A layer's sensitivity (``node_sensitivity``) is what it costs at the logits: how much of the
all-int8 file's held-out logit error goes away when that layer alone is returned to float.

Calibration runs once per variant (min/max over the calibration images, ``calibrate``);
each search round only re-quantizes with the new exclusions, which takes seconds.
Measured before this search, on the bundled emotion ViT (655 images): top-1 agreement with
fp32 was 89.3% with every MatMul/Gemm/Conv in int8; MinMax, percentile and entropy
calibration, 4x more calibration images and symmetric activations each changed it by less
than 1 point; hand-picked float layers (attention products, patch Conv, first encoder layer,
classifier) reached 97.4%.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.converters.atomic import atomic_path
from edgeport.converters.precision_search import FLAT_RANKING_MAX, Holdout, SearchResult, Target, search_precision
from edgeport.runtimes.base import LANE_MAX_BYTES
from edgeport.runtimes.onnxruntime_runner import UNSAFE_OPTIMIZERS

OP_TYPES = ["MatMul", "Gemm", "Conv"]
SENSITIVITY_IMAGES = 64  # held-out images each layer's cost is measured on (at most)
# ... on a graph ranked in two levels (over FLAT_RANKING_MAX int8 layers), where a measurement
# runs a large model: measured on emotion-vit (flat), 16 images instead of 64 left 38 layers float
# instead of 31 in 28 s instead of 39 s, a worse file; on ViT-B/16 64 images cost 17 s a
# measurement on 2 cores, 16 about a quarter.
LARGE_GRAPH_SENSITIVITY_IMAGES = 16
_FLOAT_COPY = "__edgeport_float"  # suffix of the fp32 weights a node returned to float reads


def quantizable_nodes(model) -> list[str]:
    """Names of the nodes the quantizer may make int8 (every MatMul, Gemm and Conv), in graph order."""
    return [n.name for n in model.graph.node if n.op_type in OP_TYPES]


def preprocess(onnx_path: Path, out: Path) -> str:
    """onnxruntime's quant_pre_process into ``out``; returns how symbolic shape inference went."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # from the scratch folder: when its symbolic shape inference fails, onnxruntime leaves
    # sym_shape_infer_temp.onnx and its external data in the working directory
    with contextlib.chdir(out.parent):
        try:
            quant_pre_process(str(Path(onnx_path).resolve()), str(out), skip_symbolic_shape=False)
            return "done"
        except Exception as exc:  # onnxruntime's symbolic shape inference gives up on some graphs
            # (Expand in Swinv2 / ConvNeXtV2, MobileViT's unfold); ONNX's own shape inference is enough
            # for the quantizer, which only needs the tensor ranks it reads from the graph.
            quant_pre_process(str(Path(onnx_path).resolve()), str(out), skip_symbolic_shape=True)
            return f"skipped ({type(exc).__name__}: {str(exc)[:120]})"


def calibrate(pre: Path, calibration: np.ndarray, scratch: Path):
    """Min/max range of every tensor the quantizer needs, over all ``calibration`` images (once)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(len(calibration)))

        def get_next(self):
            i = next(self._it, None)
            return None if i is None else {input_name: calibration[i : i + 1].astype(np.float32)}

    calibrator = create_calibrator(pre, OP_TYPES, augmented_model_path=str(scratch / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax)
    calibrator.collect_data(Reader())
    return calibrator.compute_data()


def quantize(model, tensors_range, float_nodes: list[str], out: Path) -> Path:
    """The QDQ int8 model, with ``float_nodes`` left in float, written to ``out``.

    What ``quantize_static`` does after calibrating, so that the search re-quantizes without
    calibrating again. ``model``: the pre-processed model with shapes inferred (not modified).
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    quantizer = QDQQuantizer(copy.deepcopy(model), True, False, QuantType.QInt8, QuantType.QUInt8, tensors_range,
                             [], list(float_nodes), OP_TYPES, {})
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(out), False)
    return out


def run_onnx(model, inputs: np.ndarray, batch: int = 16, threads: int | None = None) -> np.ndarray:
    """Logits of ``model`` (a path or a loaded ModelProto; onnxruntime CPU, default
    optimizations: the int8 kernels validation runs; ``threads``: onnxruntime's default)."""
    return np.concatenate(list(iter_onnx(model, inputs, batch, threads)))


def iter_onnx(model, inputs: np.ndarray, batch: int = 16, threads: int | None = None) -> Iterator[np.ndarray]:
    """``run_onnx``'s logits ``batch`` images at a time, for a judge that may stop early."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=UNSAFE_OPTIMIZERS)
    name = session.get_inputs()[0].name
    for i in range(0, len(inputs), batch):
        yield session.run(None, {name: np.ascontiguousarray(inputs[i:i + batch], np.float32)})[0]


def node_sensitivity(float_model, quantized: Path, units: list[list[str]], holdout: Holdout,
                     images: int = SENSITIVITY_IMAGES) -> list[float]:
    """What each unit of ``units`` (lists of nodes int8 in ``quantized``) costs: the held-out
    logit error that goes away when that unit alone is returned to float.

    The unit's nodes are returned to float in the quantized graph itself (their inputs rewired
    around their QuantizeLinear/DequantizeLinear pairs, their weights the fp32 ones), without
    re-quantizing, so each measurement is one session and one run. The figure is the drop in
    mean squared logit error against the float file, as a fraction of the all-int8 file's.
    """
    import onnx

    base = onnx.load(str(quantized))
    inputs, reference = holdout.subset(images)
    error = float(np.mean((run_onnx(base, inputs) - reference) ** 2))
    if error == 0:
        return [0.0] * len(units)
    float_inits = {i.name: i for i in float_model.graph.initializer}
    lanes = sensitivity_lanes(base.ByteSize())

    def share(unit: list[str]) -> float:
        logits = run_onnx(_returned_to_float(base, unit, float_inits), inputs, threads=1 if lanes > 1 else None)
        return (error - float(np.mean((logits - reference) ** 2))) / error

    if lanes < 2:
        return [share(unit) for unit in units]
    with concurrent.futures.ThreadPoolExecutor(lanes) as pool:
        return list(pool.map(share, units))


def sensitivity_lanes(model_bytes: int) -> int:
    """How many layer measurements run side by side, each on a single-thread session: one per core
    for a model of at most LANE_MAX_BYTES, else one (with onnxruntime's threads).

    A small graph's session build and run leave the second core mostly idle: emotion-vit's
    onnx-int8-static step, 50 layers ranked each of 10 rounds, took 26.8 / 27.3 s on two lanes
    against 29.1 / 32.5 s (2 cores), with the same file (the same sha256, 19 float layers).
    """
    return (os.cpu_count() or 1) if model_bytes <= LANE_MAX_BYTES else 1  # as iter_tflite's lanes count cores


def _returned_to_float(model, names: list[str], float_inits: dict):
    """A copy of QDQ ``model`` in which the nodes ``names`` read float inputs and float weights."""
    out = type(model)()
    out.CopyFrom(model)
    producer = {o: n for n in out.graph.node for o in n.output}  # rewiring inputs changes no producer
    by_name = {n.name: n for n in out.graph.node}
    for name in names:
        if name in by_name:
            _node_to_float(out, by_name[name], producer, float_inits)
    return out


def _node_to_float(model, node, producer: dict, float_inits: dict) -> None:
    """Rewire ``node`` of ``model`` (in place) around its input QDQ pairs and its Gemm/Conv output pair."""
    for i, tensor in enumerate(node.input):
        dq = producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[i] = q.input[0]  # the activation before its QDQ pair
            continue
        original = _original_initializer(dq.input[0], float_inits)
        if original is not None:  # a quantized weight or bias: the fp32 one instead
            name = original.name + _FLOAT_COPY
            if not any(init.name == name for init in model.graph.initializer):
                init = copy.deepcopy(original)
                init.name = name
                model.graph.initializer.append(init)
            node.input[i] = name
    # The quantizer also puts a QDQ pair on the outputs of Gemm and Conv; a float node has none,
    # except where an int8 consumer quantizes its own input: readers that are not quantized ops
    # get the float output back.
    pairs = {n.output[0]: n.input[0] for n in model.graph.node
             if n.op_type == "QuantizeLinear" and n.input[0] in node.output}
    dequantized = {n.output[0]: pairs[n.input[0]] for n in model.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in pairs}
    for n in model.graph.node:
        if n.op_type in OP_TYPES:
            continue
        for i, tensor in enumerate(n.input):
            if tensor in dequantized:
                n.input[i] = dequantized[tensor]


def _original_initializer(quantized_name: str, float_inits: dict):
    """The fp32 initializer a quantized one was made from (onnxruntime names it NAME_quantized)."""
    if quantized_name.endswith("_quantized"):
        return float_inits.get(quantized_name[: -len("_quantized")])
    return float_inits.get(quantized_name)


def convert_onnx_int8_static(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray, *,
                             holdout: Holdout | None = None, target: Target | None = None,
                             float_nodes: list[str] | None = None,
                             log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]]:
    """Quantize ``onnx_path`` statically, calibrated on ``calibration`` (preprocessed NCHW float32).

    With a ``holdout`` (held-out calibration images and the fp32 file's logits on them) and a
    ``target``, the precision search picks the layers that stay float; ``float_nodes`` instead
    names them (no search; None and no holdout: everything int8). Returns (path, settings).
    """
    import onnx
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    if len(calibration) == 0:
        raise ValueError("static int8 needs calibration images, and none were given")
    with tempfile.TemporaryDirectory(prefix="edgeport-q-") as tmp_dir, atomic_path(out_path) as tmp:
        scratch = Path(tmp_dir)
        pre = scratch / "pre.onnx"
        symbolic = preprocess(Path(onnx_path), pre)
        model = load_model_with_shape_infer(pre)
        candidates = quantizable_nodes(model)
        ranges = calibrate(pre, calibration, scratch)
        rounds = itertools.count()

        def build(raised: list[str]) -> Path:
            return quantize(model, ranges, raised, scratch / f"round{next(rounds)}.onnx")

        search: SearchResult | None = None
        if float_nodes is None and holdout is not None and target is not None:
            float_model = onnx.load(str(pre))
            images = SENSITIVITY_IMAGES if len(candidates) <= FLAT_RANKING_MAX else LARGE_GRAPH_SENSITIVITY_IMAGES
            search = search_precision(
                candidates, build, lambda path: iter_onnx(path, holdout.inputs),
                lambda path, raised, units: node_sensitivity(float_model, path, units, holdout, images),
                holdout, target, log=log)
            chosen, kept = search.path, [r["name"] for r in search.raised]
        else:
            kept = list(float_nodes or [])
            chosen = build(kept)
        Path(tmp).write_bytes(chosen.read_bytes())
    settings: dict[str, Any] = {
        "format": "QDQ", "op_types": OP_TYPES, "per_channel": True, "weights": "int8", "activations": "uint8",
        "calibration": "minmax", "calibration_images": int(len(calibration)),
        "quantizable_nodes": len(candidates), "float_nodes": kept,
        "int8_nodes": len(candidates) - len(kept), "symbolic_shape_inference": symbolic}
    if search is not None:
        settings["precision_search"] = search.to_dict(holdout, target, "float")
    return Path(out_path), settings
