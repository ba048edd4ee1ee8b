"""A dynamic batch is checked, not assumed (converters/onnx_batch.py): every ONNX variant is run at
two batch sizes at export; one that cannot take any batch is re-exported or pinned to batch 1 and
recorded as such, and a runtime failure reads as one sentence."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.converters.onnx_batch import BatchCheckError, check_batch, ensure_any_batch_or_pin
from edgeport.runtimes import RunnerError, runner_class


def _model(path, *, baked_batch: int | None, mix: bool = False):
    """pixel_values (batch, 3, 4, 4) -> logits (batch, 2), declared dynamic. ``baked_batch``: a
    Reshape to (baked_batch, 48) inside, as a trace with that batch leaves it; ``mix``: each image
    gets the batch's mean added, so an image's output depends on the others."""
    import onnx
    from onnx import TensorProto, helper

    w = np.random.default_rng(0).standard_normal((48, 2)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["mixed" if mix else "pixel_values", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    if mix:
        nodes[:0] = [helper.make_node("ReduceMean", ["pixel_values", "axes0"], ["mean"], keepdims=1),
                     helper.make_node("Add", ["pixel_values", "mean"], ["mixed"])]
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [baked_batch or -1, 48]),
         helper.make_tensor("axes0", TensorProto.INT64, [1], [0]),
         helper.make_tensor("w", TensorProto.FLOAT, list(w.shape), w.flatten().tolist())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)
    return path


def test_a_file_that_takes_any_batch_passes(tmp_path):
    assert check_batch(_model(tmp_path / "ok.onnx", baked_batch=None)) == ("any", None)


def test_a_baked_batch_is_caught_pinned_and_run_one_image_at_a_time(tmp_path):
    path = _model(tmp_path / "baked.onnx", baked_batch=1)
    declared, problem = check_batch(path)
    assert declared == "any" and "fails at batch 3" in problem and "Reshape node" in problem
    assert "onnxruntime_src" not in problem and ".h:" not in problem  # one sentence, not C++ internals
    record = ensure_any_batch_or_pin(path)
    assert record["batch"] == 1 and "pinned to batch 1" in record["batch_note"]
    assert check_batch(path) == (1, None)  # now declared as what it is
    images = np.random.default_rng(1).standard_normal((5, 3, 4, 4)).astype(np.float32)
    with runner_class("onnxruntime")(path) as runner:
        together = runner.infer(images)
        alone = np.concatenate([runner.infer(images[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_images_mixed_inside_the_graph_are_caught(tmp_path):
    _, problem = check_batch(_model(tmp_path / "mixed.onnx", baked_batch=None, mix=True))
    assert problem and "differs from the same image alone" in problem


def test_a_file_baked_at_another_batch_cannot_be_pinned_and_says_so(tmp_path):
    path = _model(tmp_path / "two.onnx", baked_batch=2)
    with pytest.raises(BatchCheckError, match="two.onnx does not run at batch 1 either"):
        ensure_any_batch_or_pin(path)


def test_a_runtime_failure_is_one_sentence(tmp_path):
    path = _model(tmp_path / "baked.onnx", baked_batch=1)
    with runner_class("onnxruntime")(path) as runner, pytest.raises(RunnerError) as caught:
        runner.infer(np.zeros((8, 3, 4, 4), np.float32))
    message = str(caught.value)
    assert message.startswith("onnxruntime failed on a batch of 8: Reshape node")
    assert "\n" not in message and "onnxruntime_src" not in message


def test_siglip_exports_with_a_batch_it_really_takes(tmp_path, calib_dir):
    """SigLIP: optimum has no image-classification export for it, and torch.export traced at batch 1
    baked the batch into its reshapes; the files now take any batch, checked at export."""
    from edgeport.architectures import make_model
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    model = make_model("siglip", tmp_path / "siglip")
    out = tmp_path / "out"
    result = export_model("siglip", resolve_source(str(model)), out, variants=["onnx-fp32", "onnx-int8-dynamic"],
                          images_dir=None, progress=False, isolate=False)
    assert result.failed == [], result.manifest
    records = {v["name"]: v for v in json.loads((out / "manifest.json").read_text())["variants"]}
    assert records["onnx-fp32"]["settings"]["exporter"] == "torch.onnx dynamo"
    assert {records[n]["batch"] for n in records} == {"any"} and not any("batch_note" in r for r in records.values())
    images = np.random.default_rng(2).standard_normal((8, 3, 32, 32)).astype(np.float32)
    with runner_class("onnxruntime")(out / "model.onnx") as runner:
        together = runner.infer(images)
        alone = np.concatenate([runner.infer(images[i:i + 1]) for i in range(8)])
    np.testing.assert_allclose(together, alone, atol=1e-4)
