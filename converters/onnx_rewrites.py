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
