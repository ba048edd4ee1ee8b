"""The mobile hand-off bundle written after validation."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from runtimes.tflite_runner import tflite_io_details


@pytest.fixture
def bundle(validated_tiny, tmp_path):
    dst = tmp_path / "mobile"
    shutil.copytree(validated_tiny / "mobile", dst)
    return dst


def test_bundle_files_and_checksums_verify(bundle):
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["README.md", "SHA256SUMS", "labels.txt", "model.json", "model_fp16.tflite", "model_fp32.tflite",
                     "model_int8.tflite", "model_int8_io.tflite"]
    assert (bundle / "labels.txt").read_text() == "female\nmale\n"
    assert shutil.which("sha256sum"), "coreutils sha256sum is needed to check SHA256SUMS as a user would"
    ok = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.count(": OK") == len(names) - 1
    (bundle / "model_int8.tflite").write_bytes(b"corrupted in transit")
    bad = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)
    assert bad.returncode != 0 and "model_int8.tflite: FAILED" in bad.stdout


def test_model_json_matches_the_tflite_files(bundle):
    model = json.loads((bundle / "model.json").read_text())
    assert model["labels"] == ["female", "male"]
    pre = model["preprocessing"]
    assert pre["resize"]["height"] == 32 and pre["mean"] == [0.5, 0.5, 0.5] and pre["rescale_factor"] == pytest.approx(1 / 255)
    assert model["source"]["weights_sha256"] and model["output"]["kind"] == "logits"
    assert [f["file"] for f in model["files"]] == ["model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite",
                                                   "model_int8_io.tflite"]
    for entry in model["files"]:
        actual = tflite_io_details(str(bundle / entry["file"]))
        for side in ("input", "output"):
            assert entry[side]["name"] == actual[side]["name"]
            assert entry[side]["shape"] == actual[side]["shape"]
            assert entry[side]["dtype"] == actual[side]["dtype"]
            if "scale" in actual[side]:
                assert entry[side]["quantization"] == {"scale": actual[side]["scale"],
                                                       "zero_point": actual[side]["zero_point"]}
            else:
                assert "quantization" not in entry[side]
        assert entry["input"]["layout"] == "NHWC" and entry["input"]["shape"] == [1, 32, 32, 3]
        assert entry["size_bytes"] == (bundle / entry["file"]).stat().st_size
        assert entry["accuracy"] is not None and entry["latency_ms_p50"] > 0
    io = model["files"][-1]
    assert io["input"]["dtype"] == "int8" and io["output"]["dtype"] == "int8"
    # The full-integer files say which integer kernels they need; the float ones do not.
    compute = {f["variant"]: f.get("compute") for f in model["files"]}
    assert compute["tflite-int8"] == compute["tflite-int8-io"] == {"weights": "int8", "activations": "int8",
                                                                    "integer_only": True}
    assert compute["tflite-fp32"] is None and compute["tflite-fp16"] is None
    card = (bundle / "README.md").read_text()
    assert "```kotlin" in card and "```swift" in card and "not embedded as TFLite metadata" in card
    assert f"zero point {io['input']['quantization']['zero_point']}" in card
    assert "int8 (integer-only, int8 activations)" in card and "16x8" not in card
