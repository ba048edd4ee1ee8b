"""Drift localization: where in an ONNX variant do its outputs leave the fp32 ONNX reference?

Every float tensor that both graphs compute under the same name (quantizers and the fp16
converter keep the original names of the tensors they rewrite) is exposed as an extra
graph output, both models run on a few evaluation images, and each tensor's relative
error ||variant - fp32|| / ||fp32|| is taken in the fp32 graph's topological order. The
first tensor above the tolerance is named in the report with the node that produces it.

Why our own code: Polygraphy does this comparison (`polygraphy run --onnxrt
--mark-all`), but it is not in the lock, and the part needed here is a few lines of
onnx + onnxruntime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TOLERANCE = 0.05  # relative L2 error of an intermediate tensor


def localize_divergence(reference_onnx: str | Path, variant_onnx: str | Path, inputs: np.ndarray, *,
                        tolerance: float = DEFAULT_TOLERANCE, max_images: int = 4) -> dict[str, Any]:
    """Per-tensor error of ``variant_onnx`` against ``reference_onnx`` and the first node over ``tolerance``."""
    import onnx

    ref_model = onnx.load(str(reference_onnx))
    var_model = onnx.load(str(variant_onnx))
    order = _float_node_outputs(ref_model)  # (tensor, node name, op type), topological
    produced = {out for node in var_model.graph.node for out in node.output}
    shared = [entry for entry in order if entry[0] in produced]
    batch = np.ascontiguousarray(inputs[:max_images], dtype=np.float32)
    ref_out = _run_with_outputs(ref_model, [t for t, _, _ in shared], batch)
    var_out = _run_with_outputs(var_model, [t for t, _, _ in shared], batch)
    layers = []
    first = None
    for tensor, node, op in shared:
        a, b = ref_out.get(tensor), var_out.get(tensor)
        if a is None or b is None or a.shape != b.shape or a.dtype.kind != "f" or b.dtype.kind != "f":
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        norm = float(np.linalg.norm(a64))
        rel = float(np.linalg.norm(a64 - b64) / norm) if norm > 0 else float(np.linalg.norm(b64))
        row = {"tensor": tensor, "node": node, "op_type": op, "relative_error": rel,
               "max_abs_diff": float(np.max(np.abs(a64 - b64))) if a.size else 0.0}
        layers.append(row)
        if first is None and rel > tolerance:
            first = row
    return {"reference": Path(reference_onnx).name, "images": int(len(batch)), "tolerance": tolerance,
            "compared_tensors": len(layers), "first_divergent": first, "layers": layers}


def _float_node_outputs(model: Any) -> list[tuple[str, str, str]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(inferred.graph.value_info) + list(inferred.graph.output)}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    out = []
    for i, node in enumerate(model.graph.node):
        for name in node.output:
            if name and types.get(name) in floats:
                out.append((name, node.name or f"{node.op_type}_{i}", node.op_type))
    return out


def _run_with_outputs(model: Any, tensors: list[str], batch: np.ndarray) -> dict[str, np.ndarray]:
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    # fusions would hide intermediate tensors the reference has; compare the graphs as written
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: batch})
    return dict(zip(names, values))
