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
