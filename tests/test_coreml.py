"""Core ML variants: made with the normalization inside, checked structurally, reported as not validated."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from edgeport.validation.preprocess import Preprocessing

COREML = ["coreml-fp32", "coreml-fp16"]


@pytest.mark.parametrize("pre", [
    Preprocessing(8, 8, do_resize=False),  # ViT: mean = std = 0.5
    Preprocessing(8, 8, do_resize=False, image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225)),
    Preprocessing(8, 8, do_resize=False, rescale_offset=True, image_mean=(0.485, 0.456, 0.406),
                  image_std=(0.229, 0.224, 0.225), extra_std=(0.2, 0.3, 0.4)),  # EfficientNet's offset, extra std
    Preprocessing(8, 8, do_resize=False, do_normalize=False, channel_order="BGR"),  # MobileViT
])
def test_the_models_first_op_reproduces_the_processor(pre):
    from edgeport.converters.coreml_export import input_affine

    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    expected = pre(Image.fromarray(rgb))  # CHW, in the model's channel order
    # what the Core ML file receives: 0-255 pixels, channels in its color layout
    arrived = (rgb[..., ::-1] if pre.channel_order == "BGR" else rgb).transpose(2, 0, 1).astype(np.float64)
    scale, offset = input_affine(pre.to_dict())
    got = arrived * np.asarray(scale)[:, None, None] + np.asarray(offset)[:, None, None]
    assert np.abs(got - expected).max() < 1e-5


@pytest.fixture(scope="module")
def coreml_export(exported_tiny, tiny_vit, faces_dir, calib_dir, tmp_path_factory):
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    out = tmp_path_factory.mktemp("coreml") / "tiny-vit"
    shutil.copytree(exported_tiny, out)
    result = export_model("tiny-vit", resolve_source(str(tiny_vit)), out, variants=["tflite-fp32", *COREML],
                          images_dir=None, calibration_dir=calib_dir, eval_dir=faces_dir, isolate=False,
                          progress=False)
    assert result.failed == [], result.manifest
    return out, {v["name"]: v for v in result.manifest["variants"]}


def test_packages_are_classifiers_with_the_labels_and_an_image_input(coreml_export):
    from edgeport.converters.coreml_export import check_mlpackage

    out, records = coreml_export
    for name in COREML:
        s = records[name]["settings"]
        assert (out / records[name]["path"]).is_dir() and records[name]["path"].endswith(".mlpackage")
        assert s["check"]["spec"] == "loads" and s["check"]["labels"] == 2
        assert s["input"]["kind"] == "image" and s["input"]["pixel_range"] == "0-255"
        # the traced module was compared with the PyTorch model on real images before converting
        assert s["traced_vs_pytorch_max_abs_diff"] is not None and s["traced_vs_pytorch_max_abs_diff"] < 1e-5
    weights = {n: (out / records[n]["path"] / "Data/com.apple.CoreML/weights/weight.bin").stat().st_size for n in COREML}
    assert weights["coreml-fp16"] < 0.6 * weights["coreml-fp32"]  # fp16 weights stored
    with pytest.raises(ValueError, match="model_fp32.mlpackage.*labels"):
        check_mlpackage(out / "model_fp32.mlpackage", ["cat", "dog"], (32, 32))


def test_validate_gate_and_bundle_treat_them_as_not_validated(coreml_export, faces_dir, tmp_path, capsys):
    from edgeport.cli import main

    out, _ = coreml_export
    copy = tmp_path / "tiny-vit"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["variants"] = [v for v in manifest["variants"] if v["name"] in ["onnx-fp32", "tflite-fp32", *COREML]]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["validate", str(copy), "--eval", str(faces_dir), "--no-progress", "--latency-runs", "2"]) == 0
    report = json.loads((copy / "report.json").read_text())
    rows = {v["name"]: v for v in report["variants"]}
    for name in COREML:
        assert rows[name]["status"] == "not validated" and rows[name]["passed"] is None
        assert "macOS" in rows[name]["not_validated"] and rows[name]["failures"] == []
    assert rows["tflite-fp32"]["status"] == "passed" and report["passed"] is True
    md = (copy / "report.md").read_text()
    assert "| not validated | coreml-fp16 |" in md and "## Not validated on this machine" in md
    capsys.readouterr()
    assert main(["gate", str(copy)]) == 0
    printed = capsys.readouterr().out
    assert "NOTE tiny-vit/coreml-fp32" in printed and "FAIL" not in printed
    # a failing variant still fails the gate beside them
    report["variants"][0]["failures"] = [{"metric": "agreement", "message": "agreement 90% < 100%"}]
    (copy / "report.json").write_text(json.dumps(report))
    assert main(["gate", str(copy)]) != 0

    bundle = copy / "mobile"
    model = json.loads((bundle / "model.json").read_text())
    files = {f["file"]: f for f in model["files"]}
    assert {"model_fp32.mlpackage", "model_fp16.mlpackage"} <= set(files)
    assert files["model_fp16.mlpackage"]["passed_budget"] is None and files["model_fp16.mlpackage"]["not_validated"]
    row = next(r for r in model["which_file"] if "Core ML" in r["hardware"])
    assert row["files"] == ["model_fp16.mlpackage"] and "Not validated" in row["why"]
    card = (bundle / "README.md").read_text()
    assert "import Vision" in card and "VNCoreMLRequest" in card and "imageCropAndScaleOption = .scaleFill" in card
    sums = (bundle / "SHA256SUMS").read_text()
    assert "model_fp16.mlpackage/Manifest.json" in sums
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=bundle, check=True)


def test_the_runner_says_why_it_cannot_run(tmp_path):
    from edgeport.runtimes import RunnerError, runner_class

    cls = runner_class("coreml")
    assert "macOS" in cls.unavailable_reason()
    (tmp_path / "m.mlpackage").mkdir()
    with pytest.raises(RunnerError, match="m.mlpackage"):
        cls(tmp_path / "m.mlpackage").activate()
