"""ONNX fp32 -> ONNX static int8 (QDQ), calibrated on real images.

Per-channel int8 weights and uint8 activations on the weight MatMuls of the encoder:
LayerNorm, GELU, Softmax and the residual Adds stay float, where int8 hurts ViTs most, and
so do the first and last weight layers (see float_nodes). Measured on the bundled
emotion ViT (655 images), top-1 agreement with fp32 was 89.3% with every MatMul/Gemm/Conv
in int8, 90.1% with the attention products float, 93.4% with the patch Conv float too,
and 97.4% with the first encoder layer and the classifier also float. MinMax, percentile
and entropy calibration, 4x more calibration images and symmetric activations changed it by
less than 1 point.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np

from converters.atomic import atomic_path

OP_TYPES = ["MatMul", "Gemm", "Conv"]
# Per architecture (model_type), node-name parts of optimum's export that also stay float:
# the first encoder layer of the ViT-family encoders (measured on emotion-vit, see above; DeiT,
# BEiT and DINOv2 share ViT's encoder and its node names, and pass the matrix with it). The
# one place such names live; #16's sensitivity search is to replace it.
_FIRST_LAYER = ("/encoder/layer.0/",)
FLOAT_SCOPES_BY_MODEL_TYPE: dict[str, tuple[str, ...]] = {t: _FIRST_LAYER for t in ("vit", "deit", "beit", "dinov2")}


def float_nodes(model, model_type: str | None = None) -> list[str]:
    """Nodes to leave in float, from the graph, plus the architecture's FLOAT_SCOPES_BY_MODEL_TYPE.

    From the graph: activation x activation MatMuls (attention's products), the stem (the
    first weight layer the input reaches) and the head (weight layers whose output reaches the
    logits with no other weight layer between; both heads of a with-teacher model): the first
    and last layers are the most sensitive ones. On ViT these are the patch Conv and the classifier.
    """
    weights = {init.name for init in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in OP_TYPES]
    scopes = FLOAT_SCOPES_BY_MODEL_TYPE.get(model_type or "", ())
    edge = _stem(model) | _head(model)
    keep = []
    for node in nodes:
        activation_only = node.op_type == "MatMul" and not any(i in weights for i in node.input)
        if activation_only or node.name in edge or any(scope in node.name for scope in scopes):
            keep.append(node.name)
    return keep


def _is_weight_layer(node, weights: set[str]) -> bool:
    return node.op_type in OP_TYPES and any(i in weights for i in node.input)


def _stem(model) -> set[str]:
    """The first weight layer, in graph (topological) order, that the model input reaches.

    Only the first: through the residual stream the input reaches every block without passing
    a weight layer, so "reached through non-weight ops" alone would take them all.
    """
    weights = {init.name for init in model.graph.initializer}
    reached = {i.name for i in model.graph.input if i.name not in weights}
    for node in model.graph.node:
        if not any(i in reached for i in node.input):
            continue
        if _is_weight_layer(node, weights):
            return {node.name}
        reached.update(node.output)
    return set()


def _head(model) -> set[str]:
    """Weight layers that reach the graph outputs through non-weight ops only."""
    weights = {init.name for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    found, seen = set(), set()
    frontier = [o.name for o in model.graph.output]
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if _is_weight_layer(node, weights):
            found.add(node.name)
        else:
            frontier += list(node.input)
    return found


def convert_onnx_int8_static(onnx_path: str | Path, out_path: str | Path,
                             calibration: np.ndarray, model_type: str | None = None) -> tuple[Path, dict]:
    """Quantize ``onnx_path`` statically with ``calibration`` (preprocessed NCHW float32 images).

    Returns (path, settings used).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ValueError("static int8 needs calibration images, and none were given")
    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(len(calibration)))

        def get_next(self):
            i = next(self._it, None)
            return None if i is None else {input_name: calibration[i : i + 1].astype(np.float32)}

    with tempfile.TemporaryDirectory(prefix="edgeport-q-") as tmp_dir, atomic_path(out_path) as tmp:
        pre = Path(tmp_dir) / "pre.onnx"
        try:
            # from the scratch folder: when its symbolic shape inference fails, onnxruntime leaves
            # sym_shape_infer_temp.onnx and its external data in the working directory
            with contextlib.chdir(tmp_dir):
                quant_pre_process(str(Path(onnx_path).resolve()), str(pre), skip_symbolic_shape=False)
            symbolic = "done"
        except Exception as exc:  # onnxruntime's symbolic shape inference gives up on some graphs
            # (Expand in Swinv2 / ConvNeXtV2, MobileViT's unfold); ONNX's own shape inference is enough
            # for quantize_static, which only needs the tensor ranks it reads from the graph.
            with contextlib.chdir(tmp_dir):
                quant_pre_process(str(Path(onnx_path).resolve()), str(pre), skip_symbolic_shape=True)
            symbolic = f"skipped ({type(exc).__name__}: {str(exc)[:120]})"
        excluded = float_nodes(onnx.load(str(pre)), model_type)
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=OP_TYPES, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=excluded)
    settings = {"format": "QDQ", "op_types": OP_TYPES, "per_channel": True, "weights": "int8",
                "activations": "uint8", "calibration": "minmax", "calibration_images": int(len(calibration)),
                "float_scopes": list(FLOAT_SCOPES_BY_MODEL_TYPE.get(model_type or "", ())),
                "float_rule": "attention products, stem and head (from the graph)", "float_nodes": len(excluded),
                "symbolic_shape_inference": symbolic}
    return Path(out_path), settings
