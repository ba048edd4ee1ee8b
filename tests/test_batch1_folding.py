"""The batch-1 ONNX model that both onnx2tf runs start from."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort

from edgeport.converters.onnx2tf_tool import simplify_to_batch1


def test_batch1_model_is_static_standard_and_equivalent(exported_tiny, tmp_path):
    src = exported_tiny / "model.onnx"
    out = simplify_to_batch1(src, tmp_path / "model_b1.onnx")
    model = onnx.load(str(out))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == 1 and all(d > 0 for d in dims)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Shape"] == 0, ops  # the shape arithmetic is folded
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert ops["MatMul"] > 0 and ops["Gemm"] <= 1, ops  # Linear layers stay MatMul (+ Add)
    assert not list(tmp_path.glob("*.fixed.onnx"))  # its scratch file is gone

    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    name = model.graph.input[0].name
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def _zero_pad_then_max_pool(path) -> None:
    """Pad(0) + MaxPool with the pads computed from the input's shape, as BiT's "SAME" pool is
    exported: the pads become constants once the batch-1 copy fixes the shape."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"]),
        helper.make_node("Mul", ["hw", "zero"], ["no_pad"]),
        helper.make_node("Add", ["no_pad", "one_each"], ["pad_hw"]),
        helper.make_node("Concat", ["zeros_nc", "pad_hw", "zeros_nc", "pad_hw"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["padded"], mode="constant"),
        helper.make_node("MaxPool", ["padded"], ["y"], kernel_shape=[3, 3], strides=[1, 1]),
    ]
    consts = [helper.make_tensor(name, TensorProto.INT64, [len(v)], v) for name, v in
              [("two", [2]), ("four", [4]), ("zero", [0]), ("one_each", [1, 1]), ("zeros_nc", [0, 0])]]
    graph = helper.make_graph(nodes, "pad_pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], consts)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_zero_pad_before_max_pool_keeps_its_zeros(tmp_path):
    """onnxruntime's Pad_Fusion moves a constant zero Pad into MaxPool's pads, which MaxPool fills
    with -inf: on negative inputs the border windows then lose the 0 (BiT's TFLite files were
    0.22 off). The batch-1 copy for onnx2tf and edgeport's runner keep the zeros."""
    from edgeport.runtimes import runner_class

    src = tmp_path / "pad_pool.onnx"
    _zero_pad_then_max_pool(src)
    x = -np.random.default_rng(0).random((1, 2, 5, 5)).astype(np.float32) - 0.1  # all negative
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.max(np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3)), axis=(-2, -1))
    assert (want[..., 0, 0] == 0).all()  # the corners see the padding
    folded = simplify_to_batch1(src, tmp_path / "model_b1.onnx")
    assert [n.op_type for n in onnx.load(str(folded)).graph.node] == ["Pad", "MaxPool"]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(str(folded), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)
    with runner_class("onnxruntime")(str(folded)) as runner:  # a file with the pads already constant
        np.testing.assert_array_equal(runner.infer(x), want)
