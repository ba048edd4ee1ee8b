"""Each runtime runs its artifact of the same small ViT and matches the PyTorch reference."""
from __future__ import annotations

import numpy as np
import pytest

from edgeport.runtimes import RunnerError, runner_class
from edgeport.validation.dataset import load_eval_arrays, scan_eval_set
from edgeport.validation.preprocess import Preprocessing


@pytest.fixture(scope="module")
def batch(exported_tiny, faces_dir):
    pre = Preprocessing.from_file(exported_tiny / "preprocessor_config.json")
    inputs, labels, _ = load_eval_arrays(scan_eval_set(faces_dir, ["female", "male"]), pre, progress=False)
    return inputs


@pytest.fixture(scope="module")
def reference(tiny_vit, batch):
    with runner_class("torch")(tiny_vit) as r:
        return r.infer(batch)


@pytest.mark.parametrize(
    "runtime, artifact",
    [("onnxruntime", "model.onnx"), ("savedmodel", "savedmodel"), ("tflite", "model_fp32.tflite")],
)
def test_runtime_matches_reference(runtime, artifact, exported_tiny, batch, reference):
    with runner_class(runtime)(exported_tiny / artifact) as runner:
        out = runner.infer(batch)
    assert out.shape == reference.shape == (len(batch), 2)
    assert out.dtype == np.float32
    assert np.abs(out - reference).max() < 1e-4
    assert (out.argmax(1) == reference.argmax(1)).all()
    # the reference must not be a constant output, or the comparison would prove nothing
    assert np.ptp(reference[:, 0]) > 1e-3


def test_static_batch_runner_runs_any_batch(exported_tiny, batch, reference):
    """onnx2tf artifacts have batch 1; the runner splits larger batches."""
    with runner_class("tflite")(exported_tiny / "model_fp32.tflite") as runner:
        assert runner.fixed_batch_size() == 1
        out = runner.infer(batch[:5])
    np.testing.assert_allclose(out, reference[:5], atol=1e-4)


@pytest.mark.parametrize("artifact", ["model_fp32.tflite", "model_int8.tflite", "model_int8_io.tflite"])
def test_a_small_batch1_file_runs_a_batch_on_one_interpreter_per_thread(exported_tiny, batch, artifact, monkeypatch):
    """Lanes: the same logits as image by image on the one interpreter, in a different way; one
    thread, one image, or a file above LANE_MAX_BYTES keep the one interpreter."""
    from edgeport.runtimes import tflite_runner

    path = exported_tiny / artifact
    with runner_class("tflite")(path, threads=1) as single:
        one_by_one = np.concatenate([single.infer(batch[i:i + 1]) for i in range(len(batch))])
        assert single._lane_count(len(batch)) == 1 and single.infer(batch).shape == one_by_one.shape
        assert single._lanes == []
    with runner_class("tflite")(path, threads=2) as runner:
        assert runner._lane_count(len(batch)) == 2 and runner._lane_count(1) == 1
        np.testing.assert_array_equal(runner.infer(batch), one_by_one)
        assert len(runner._lanes) == 2
        np.testing.assert_array_equal(runner.infer(batch[:3]), one_by_one[:3])  # uneven parts, in order
        monkeypatch.setattr(tflite_runner, "LANE_MAX_BYTES", path.stat().st_size - 1)
        assert runner._lane_count(len(batch)) == 1


def test_onnx_keeps_dynamic_batch(exported_tiny):
    with runner_class("onnxruntime")(exported_tiny / "model.onnx") as runner:
        assert runner.fixed_batch_size() is None


def test_missing_artifact_names_the_file(tmp_path):
    with pytest.raises(RunnerError, match="not found.*nothing.onnx"):
        runner_class("onnxruntime")(tmp_path / "nothing.onnx").activate()


def test_unknown_runtime():
    with pytest.raises(RunnerError, match="unknown runtime 'no-such-runtime'"):
        runner_class("no-such-runtime")
