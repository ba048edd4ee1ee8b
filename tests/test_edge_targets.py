"""ExecuTorch and OpenVINO variants of the small ViT: made, run by their runners, validated like the rest."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeport.runtimes import RunnerError, runner_class
from edgeport.validation.dataset import load_eval_arrays, scan_eval_set
from edgeport.validation.preprocess import Preprocessing

EDGE_VARIANTS = ["executorch-fp32", "executorch-int8", "openvino-fp32", "openvino-int8"]
ARTIFACTS = {"executorch-fp32": "model_fp32.pte", "executorch-int8": "model_int8.pte",
             "openvino-fp32": "openvino_fp32", "openvino-int8": "openvino_int8"}


@pytest.fixture(scope="module")
def edge_export(exported_tiny, tiny_vit, faces_dir, calib_dir, tmp_path_factory):
    """exported_tiny plus the ExecuTorch and OpenVINO variants (onnx-fp32 reused from it)."""
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    out = tmp_path_factory.mktemp("edge") / "tiny-vit"
    shutil.copytree(exported_tiny, out)
    # a random model cannot track its reference in int8: plain quantization here, on every calibration
    # image (test_openvino_accuracy_control_keeps_the_sensitive_layers_float tests the accuracy control)
    result = export_model("tiny-vit", resolve_source(str(tiny_vit)), out, variants=["onnx-fp32", *EDGE_VARIANTS],
                          images_dir=None, calibration_dir=calib_dir, eval_dir=faces_dir, isolate=False,
                          progress=False, precision_search=False)
    assert result.failed == [], result.manifest
    return out, {v["name"]: v for v in result.manifest["variants"]}


@pytest.fixture(scope="module")
def batch_and_reference(edge_export, tiny_vit, faces_dir):
    out, _ = edge_export
    pre = Preprocessing.from_file(out / "preprocessor_config.json")
    inputs, _, _ = load_eval_arrays(scan_eval_set(faces_dir, ["female", "male"]), pre, progress=False)
    with runner_class("torch")(tiny_vit) as r:
        reference = r.infer(inputs)
    assert np.ptp(reference[:, 0]) > 1e-3  # a constant reference would prove nothing
    return inputs, reference


@pytest.mark.parametrize("variant", ["executorch-fp32", "openvino-fp32"])
def test_fp32_programs_match_pytorch(variant, edge_export, batch_and_reference):
    out, records = edge_export
    inputs, reference = batch_and_reference
    with runner_class(records[variant]["runtime"])(out / ARTIFACTS[variant]) as runner:
        logits = runner.infer(inputs)  # 16 images: the batch-1 .pte runs them one by one
    assert logits.shape == reference.shape and logits.dtype == np.float32
    assert np.abs(logits - reference).max() < 1e-4  # the fp32 budget


@pytest.mark.parametrize("int8, fp32", [("executorch-int8", "executorch-fp32"), ("openvino-int8", "openvino-fp32")])
def test_int8_programs_are_quantized_and_close(int8, fp32, edge_export, batch_and_reference, calib_dir):
    from edgeport.pipeline import list_images

    out, records = edge_export
    inputs, reference = batch_and_reference
    with runner_class(records[int8]["runtime"])(out / ARTIFACTS[int8]) as runner:
        logits = runner.infer(inputs)
    diff = np.abs(logits - reference).max()
    assert 0 < diff < 0.5 * np.abs(reference).max()  # quantized (not the float graph), but near it
    # int8 weights stored (an IR's weights are its .bin; its .xml grows with the quantize nodes)
    size = lambda p: (p / "model.bin" if p.is_dir() else p).stat().st_size  # noqa: E731
    assert size(out / ARTIFACTS[int8]) < 0.6 * size(out / ARTIFACTS[fp32])
    settings = records[int8]["settings"]
    assert settings["precision"] == "int8" and settings["calibration_images"] == len(list_images(calib_dir))


def test_executorch_runs_in_xnnpack_and_openvino_picks_the_transformer_scheme(edge_export):
    _, records = edge_export
    for name in ("executorch-fp32", "executorch-int8"):
        s = records[name]["settings"]
        assert s["delegate_calls"] > 0
        # eager attention: no SDPA mask guards left to the portable kernels between delegate calls
        assert not {"where.self_out", "any.out", "logical_not.out"} & set(s["ops_outside_delegate"])
    assert records["openvino-int8"]["settings"]["model_type"] == "transformer"  # attention found in the graph
    assert records["openvino-int8"]["settings"]["fake_quantize_ops"] > 0


@pytest.fixture(scope="module")
def validated_edge(edge_export, faces_dir, tmp_path_factory):
    """A copy of edge_export validated with its ONNX, ExecuTorch and OpenVINO variants; do not modify."""
    from edgeport.cli import main

    out, _ = edge_export
    copy = tmp_path_factory.mktemp("validated-edge") / "tiny-vit"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["variants"] = [v for v in manifest["variants"] if v["name"] in ["onnx-fp32", *EDGE_VARIANTS]]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    cfg = copy.parent / "lenient.toml"  # a random model cannot track the reference in int8: fp32 budgets stay
    cfg.write_text("[budgets.int8]\nmin_agreement = 0.0\nmax_accuracy_drop = 100.0\n")
    assert main(["validate", str(copy), "--eval", str(faces_dir), "--no-progress", "--config", str(cfg),
                 "--latency-runs", "2"]) == 0
    return copy


def test_validate_reports_the_new_runtimes(validated_edge):
    copy = validated_edge
    report = json.loads((copy / "report.json").read_text())
    rows = {v["name"]: v for v in report["variants"]}
    assert {rows[n]["runtime"] for n in EDGE_VARIANTS} == {"executorch", "openvino"}
    for name in ("executorch-fp32", "openvino-fp32"):
        assert rows[name]["passed"] and rows[name]["max_abs_diff"] < 1e-4 and rows[name]["latency_ms"]["p50"] > 0
    assert "executorch-int8" in (copy / "report.md").read_text()
    # the mobile bundle carries the .pte files with their NCHW input and ExecuTorch snippets
    model = json.loads((copy / "mobile" / "model.json").read_text())
    pte = {f["file"]: f for f in model["files"] if f["file"].endswith(".pte")}
    assert set(pte) == {"model_fp32.pte", "model_int8.pte"}
    size = json.loads((copy / "preprocessor_config.json").read_text())["size"]
    assert pte["model_fp32.pte"]["input"]["shape"] == [1, 3, size["height"], size["width"]]
    assert pte["model_fp32.pte"]["input"]["layout"] == "NCHW"
    row = next(r for r in model["which_file"] if r["hardware"].startswith("ExecuTorch"))
    assert row["files"] and row["files"][0] in pte  # a passing .pte, never a TFLite file here
    cpu = next(r for r in model["which_file"] if r["hardware"].startswith("CPU"))
    assert all(f.endswith(".tflite") for f in cpu["files"])
    card = (copy / "mobile" / "README.md").read_text()
    assert "## ExecuTorch (.pte)" in card and "Module.load(" in card and "import ExecuTorch" in card
    assert "model_int8.pte" in (copy / "mobile" / "SHA256SUMS").read_text()


def test_broken_programs_name_the_file(tmp_path):
    pte = tmp_path / "model.pte"
    pte.write_bytes(b"not a program")
    with pytest.raises(RunnerError, match="model.pte"):
        runner_class("executorch")(pte).activate()
    ir = tmp_path / "openvino_fp32"
    ir.mkdir()
    with pytest.raises(RunnerError, match="openvino_fp32"):
        runner_class("openvino")(ir).activate()


def test_opt_in_variants_are_not_in_the_default_list():
    from edgeport.variants import CALIBRATED, DEFAULT_VARIANTS, SEARCHED, VARIANTS

    assert not set(EDGE_VARIANTS) & set(DEFAULT_VARIANTS)
    assert {"executorch-int8", "openvino-int8"} <= CALIBRATED and set(EDGE_VARIANTS) & SEARCHED == {"openvino-int8",
                                                                                         "executorch-int8"}
    assert {n for n in DEFAULT_VARIANTS if VARIANTS[n].calibrated} == {"onnx-int8-static", "tflite-int8",
                                                                       "tflite-int8-io"}


def test_openvino_accuracy_control_keeps_the_sensitive_layers_float(tmp_path):
    """NNCF's accuracy control, judged on held-out images: a deliberately sensitive layer goes float, the rest stays int8."""
    from edgeport.converters.onnx_int8_static import run_onnx
    from edgeport.converters.openvino_ir import convert_openvino_fp32, convert_openvino_int8, run_openvino
    from edgeport.converters.precision_search import Holdout, Target, split_holdout
    from test_precision_search import _sensitive_mlp

    onnx_path = _sensitive_mlp(tmp_path / "mlp.onnx")
    convert_openvino_fp32(onnx_path, tmp_path / "fp32")
    images = np.random.default_rng(0).standard_normal((128, 3, 4, 4)).astype(np.float32)
    calib, held = split_holdout(len(images))
    holdout = Holdout(images[held], run_openvino(tmp_path / "fp32", images[held]))
    target = Target(min_agreement=0.97)
    plain = convert_openvino_int8(tmp_path / "fp32", tmp_path / "plain", images[calib])
    assert "precision_search" not in plain
    assert not holdout.judge(run_openvino(tmp_path / "plain", holdout.inputs), target)["passed"]  # int8 everywhere misses

    settings = convert_openvino_int8(tmp_path / "fp32", tmp_path / "searched", images[calib], holdout=holdout,
                                     target=target, log=lambda m: None)
    search = settings["precision_search"]
    assert search["passed_on_holdout"] and search["tool"] == "nncf.quantize_with_accuracy_control"
    assert 0 < len(search["raised"]) < search["candidates"]  # some operations float, not all
    assert settings["fake_quantize_ops"] > 0
    fresh = np.random.default_rng(1).standard_normal((200, 3, 4, 4)).astype(np.float32)
    agreement = np.mean(run_onnx(onnx_path, fresh).argmax(1) == run_openvino(tmp_path / "searched", fresh).argmax(1))
    assert agreement >= 0.97  # and it holds on images the search never saw


def test_executorch_search_keeps_the_sensitive_layers_float(tmp_path):
    """PT2E with the node filter: the sensitive MLP's int8 program misses, the search's passes with
    some nodes float, calibrating once, and holds on images it never saw."""
    import torch

    from edgeport.converters.executorch_export import lower_to_xnnpack
    from edgeport.converters.executorch_int8 import CalibratedCapture, candidate_nodes, iter_pte, search_executorch_int8
    from edgeport.converters.precision_search import Holdout, Target, split_holdout
    from test_precision_search import sensitive_mlp_module

    module = sensitive_mlp_module()
    images = np.random.default_rng(0).standard_normal((128, 3, 4, 4)).astype(np.float32)
    calib, held = split_holdout(len(images))
    with torch.no_grad():
        holdout = Holdout(images[held], module(torch.from_numpy(images[held])).numpy())
    example = (torch.zeros(1, 3, 4, 4),)
    capture = CalibratedCapture(module, example, images[calib])
    lower = lambda graph: lower_to_xnnpack(torch.export.export(graph, example)).buffer  # noqa: E731
    target = Target(min_agreement=0.97)
    chosen, result, candidates = search_executorch_int8(capture, lower, tmp_path, holdout, target, log=lambda m: None)
    assert result.rounds[0]["raised"] == 0 and not result.rounds[0]["passed"]  # all int8 misses
    assert candidates == candidate_nodes(capture) and len(candidates) >= 3  # the three Linears at least
    raised = [r["name"] for r in result.raised]
    assert result.passed and 0 < len(raised) < len(candidates)
    assert capture.calibrations == 1  # every round reused the first round's statistics
    # rounds judged on the converted graph, then the choice lowered: one program per program round
    judged = [r["judged"] for r in result.rounds]
    assert judged[0] == "graph" and "program" in judged and judged == sorted(judged)  # graph rounds first
    assert [r["judged"] for r in result.rounds if r.get("chosen")] == ["program"]
    assert len(list(tmp_path.glob("*.pte"))) == judged.count("program")
    assert result.started_from.startswith("the search on the converted graph")
    # captured with a dynamic batch: the graph runs chunks of images as image by image does
    from edgeport.converters.executorch_int8 import run_graph

    assert capture.batched
    converted = capture.convert(raised)
    np.testing.assert_allclose(run_graph(converted, images[:20], batched=True), run_graph(converted, images[:20]),
                               rtol=1e-5, atol=1e-5)
    fresh = np.random.default_rng(1).standard_normal((200, 3, 4, 4)).astype(np.float32)
    with torch.no_grad():
        reference = module(torch.from_numpy(fresh)).numpy().argmax(1)
    assert np.mean(np.concatenate(list(iter_pte(chosen, fresh))).argmax(1) == reference) >= 0.97


def test_openvino_keeps_plain_quantization_when_the_accuracy_control_returns_worse(tmp_path, monkeypatch):
    """NNCF's control gave up on emotion-vit with a broken file (15% held-out agreement): the plain file is kept."""
    import nncf
    import openvino as ov

    from edgeport.converters.openvino_ir import convert_openvino_fp32, convert_openvino_int8, run_openvino
    from edgeport.converters.precision_search import Holdout, Target, split_holdout
    from test_precision_search import _sensitive_mlp

    convert_openvino_fp32(_sensitive_mlp(tmp_path / "mlp.onnx"), tmp_path / "fp32")
    images = np.random.default_rng(0).standard_normal((128, 3, 4, 4)).astype(np.float32)
    calib, held = split_holdout(len(images))
    holdout = Holdout(images[held], run_openvino(tmp_path / "fp32", images[held]))

    def broken(model, *args, **kwargs):  # logits negated: agrees with the fp32 file on almost nothing
        out = model.outputs[0]
        negated = ov.opset13.negative(out.get_node().input_value(0))
        return ov.Model([negated], model.get_parameters(), "broken")

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", broken)
    settings = convert_openvino_int8(tmp_path / "fp32", tmp_path / "int8", images[calib], holdout=holdout,
                                     target=Target(min_agreement=0.5), log=lambda m: None)
    search = settings["precision_search"]
    assert "fallback" in search and search["raised"] == []
    assert search["rounds"][0]["agreement"] < 0.2 and search["rounds"][1].get("chosen")
    assert settings["fake_quantize_ops"] > 0  # the plain int8 file was written, not the broken one
    kept = run_openvino(tmp_path / "int8", holdout.inputs).argmax(1)
    assert np.mean(kept == holdout.reference_logits.argmax(1)) == search["rounds"][1]["agreement"]


def test_an_openvino_variant_is_served_without_torch_transformers_or_tensorflow(monkeypatch, validated_edge,
                                                                                 faces_dir):
    """What `pip install 'edgeport[serve-openvino]'` runs: the OpenVINO runtime alone, no NNCF."""
    from test_backends import HEAVY, serve_and_classify

    image = next((faces_dir / "male").iterdir())
    metadata, answer, imported = serve_and_classify(monkeypatch, validated_edge, "openvino-fp32", image)
    assert metadata["variant"] == "openvino-fp32" and metadata["runtime"] == "openvino"
    assert {row["label"] for row in answer} == {"female", "male"}
    assert "openvino" in imported and not imported & HEAVY, sorted(imported & HEAVY)


def test_a_model_that_fixes_its_batch_is_captured_at_batch_1():
    """The dynamic-batch capture is a speed-up, not a requirement: a model whose code fixes the
    batch is captured at batch 1 and its converted graph runs image by image."""
    import torch

    from edgeport.converters.executorch_int8 import CalibratedCapture, run_graph

    class FixedBatch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(48, 2)

        def forward(self, x):
            return self.fc(x.reshape(1, 48))  # batch 1 only

    images = np.random.default_rng(0).standard_normal((6, 3, 4, 4)).astype(np.float32)
    capture = CalibratedCapture(FixedBatch().eval(), (torch.zeros(1, 3, 4, 4),), images)
    assert not capture.batched
    logits = run_graph(capture.convert([]), images, batched=capture.batched)
    assert logits.shape == (6, 2) and np.isfinite(logits).all()
