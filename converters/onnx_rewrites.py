"""Rewrites of an ONNX graph into equivalent standard ops that onnx2tf's TensorFlow path converts.

Each rewrite keeps the graph's outputs (the same math, in float32) and is applied only to the
batch-1 copy that onnx2tf reads (converters.onnx2tf_tool), never to the ONNX artifacts.
"""
from __future__ import annotations

from typing import Any


def expand_reduce_l2(model: Any) -> int:
    """ReduceL2(x) -> Sqrt(ReduceSumSquare(x)), in place; returns how many were rewritten.

    onnx2tf 2.6.9 turns ReduceL2 into ``tf.norm``, which fails to build in its TF backend
    ("Exception encountered when calling layer tf.norm": ConvNeXtV2's GRN, Swinv2's cosine
    attention). ReduceSumSquare takes the same axes input/attribute and keepdims.
    """
    from onnx import helper

    count = 0
    nodes = []
    for node in model.graph.node:
        if node.op_type != "ReduceL2" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        squared = node.output[0] + "__edgeport_sumsq"
        summed = helper.make_node("ReduceSumSquare", list(node.input), [squared], name=node.name + "_sumsq")
        summed.attribute.extend(node.attribute)
        nodes += [summed, helper.make_node("Sqrt", [squared], list(node.output), name=node.name + "_sqrt")]
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


def average_pools_as_global(model: Any, input_shape: tuple[int, ...]) -> int:
    """AveragePool whose one window covers its whole input -> GlobalAveragePool, in place.

    transformers' EfficientNet pools with ``AvgPool2d(hidden_dim, ceil_mode=True)``: a kernel
    larger than the feature map, whose single window PyTorch averages over the valid pixels
    only. onnxruntime's NCHWc kernel (ORT_ENABLE_ALL, the default) and onnx2tf's TFLite
    lowering (zero padding up to the kernel) divide by the whole kernel instead: logits 0.10
    off on the matrix model. For such a pool the average over the input is exactly
    GlobalAveragePool, which every runtime computes alike. Spatial sizes come from one run of
    the graph (pad sizes are computed at run time in these exports, so shape inference leaves
    them unknown). Returns how many pools were rewritten.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort

    pools = []
    for node in model.graph.node:
        if node.op_type != "AveragePool":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if any(attrs.get("pads", [])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        pools.append((node, list(attrs.get("kernel_shape", [])), int(attrs.get("ceil_mode", 0))))
    if not pools:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for node, _, _ in pools:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.zeros(input_shape, dtype=np.float32)}
    names = [node.input[0] for node, _, _ in pools]
    shapes = dict(zip(names, (a.shape for a in session.run(names, feed))))
    count = 0
    for node, kernel, ceil_mode in pools:
        spatial = list(shapes[node.input[0]][2:])
        covers = len(kernel) == len(spatial) and all(k >= s for k, s in zip(kernel, spatial))
        exact = all(k == s for k, s in zip(kernel, spatial))
        if covers and (exact or ceil_mode):
            node.op_type = "GlobalAveragePool"
            del node.attribute[:]
            count += 1
    return count
