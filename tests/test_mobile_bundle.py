"""The mobile hand-off bundle written after validation."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from edgeport.runtimes.tflite_runner import tflite_io_details


@pytest.fixture
def bundle(validated_tiny, tmp_path):
    dst = tmp_path / "mobile"
    shutil.copytree(validated_tiny / "mobile", dst)
    return dst


def test_bundle_files_and_checksums_verify(bundle):
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["README.md", "SHA256SUMS", "labels.txt", "model.json", "model_fp16.tflite", "model_fp32.tflite",
                     "model_int8.tflite", "model_int8_dynamic.tflite", "model_int8_io.tflite"]
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
    assert [f["file"] for f in model["files"]] == ["model_fp32.tflite", "model_fp16.tflite",
                                                   "model_int8_dynamic.tflite", "model_int8.tflite",
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
    assert compute["tflite-int8-dynamic"]["integer_only"] is False
    card = (bundle / "README.md").read_text()
    assert "```kotlin" in card and "```swift" in card and "not embedded as TFLite metadata" in card
    assert f"zero point {io['input']['quantization']['zero_point']}" in card
    assert "int8 (integer-only, int8 activations)" in card and "16x8" not in card


def test_which_file_table_follows_the_measured_report(bundle, validated_tiny):
    model = json.loads((bundle / "model.json").read_text())
    report = json.loads((validated_tiny / "report.json").read_text())
    measured = {v["name"]: v for v in report["variants"]}
    rows = {row["hardware"].split(" ")[0]: row for row in model["which_file"]}
    passed = [f for f in model["files"] if measured[f["variant"]]["passed"]]
    fastest = min(passed, key=lambda f: measured[f["variant"]]["latency_ms"]["p50"])
    assert rows["CPU"]["files"] == [fastest["file"]] and "export machine" in rows["CPU"]["why"]
    assert rows["GPU"]["files"] == ["model_fp16.tflite"]
    assert rows["integer-only"]["files"] == ["model_int8.tflite", "model_int8_io.tflite"]
    card = (bundle / "README.md").read_text()
    assert "## Which file" in card and f"| `{fastest['file']}` |" in card
    assert "CPU latencies were measured on the export machine" in card
    assert f'loadMappedFile(context, "{fastest["file"]}")' in card  # the snippet loads the CPU choice


def _entry(variant, p50, passed, activations=None):
    entry = {"file": f"{variant}.tflite", "variant": variant, "latency_ms_p50": p50, "passed_budget": passed}
    if activations:
        entry["compute"] = {"weights": "int8", "activations": activations, "integer_only": True}
    return entry


def test_which_file_never_recommends_a_failed_file_and_flags_int16():
    from edgeport.mobile_bundle import which_file

    files = [_entry("tflite-fp32", 2.0, True), _entry("tflite-fp16", 2.1, False),
             _entry("tflite-int8-dynamic", 0.5, False), _entry("tflite-int8", 4.0, True, "int16"),
             _entry("tflite-int8-io", 4.1, True, "int16")]
    cpu, gpu, npu = which_file(files, "Test CPU")
    assert cpu["files"] == ["tflite-fp32.tflite"] and "Test CPU" in cpu["why"]  # int8-dynamic failed
    assert gpu["files"] == ["tflite-fp32.tflite"] and "did not pass" in gpu["why"]
    assert npu["files"] == ["tflite-int8.tflite", "tflite-int8-io.tflite"] and "int8-only NPU/DSP cannot" in npu["why"]
    nothing = which_file([_entry("tflite-fp32", 2.0, False)], None)
    assert [row["files"] for row in nothing] == [[], [], []]
    assert nothing[0]["why"] == "no file passed its budget"
