"""The compatibility-matrix machinery on a quick set of variants (the full matrix is `make matrix`)."""
from __future__ import annotations

import json

import pytest

from edgeport.architectures import ARCHITECTURES, LEFT_OUT, make_model
from edgeport.matrix import MatrixOptions, run_matrix
from edgeport.validation.harness import RunSettings
from edgeport.validation.preprocess import Preprocessing, PreprocessingError, fix_input_size

# onnx2tf's tflite-fp32 on a ViT with a crop and a CNN; the SavedModel is exported_tiny's (every variant)
QUICK = ["onnx-fp32", "tflite-fp32"]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_matrix_architecture_builds_and_its_processor_is_reproduced(arch, tmp_path):
    import torch
    import transformers

    spec = ARCHITECTURES[arch]
    model = make_model(arch, tmp_path / arch)
    processor_file = model / "preprocessor_config.json"
    if spec.input_size:  # a processor that fixes no size is refused as it is, and read at the matrix's input size
        with pytest.raises(PreprocessingError, match="varying shape"):
            Preprocessing.from_file(processor_file)
        assert fix_input_size(processor_file, spec.input_size)
    # from_file checks edgeport's steps against the architecture's own processor class (1e-6)
    pre = Preprocessing.from_file(processor_file)
    assert pre.processor == spec.processor
    assert (pre.height, pre.width) == (spec.input_size or (pre.height, pre.width))
    assert json.loads((model / "config.json").read_text())["model_type"] == arch
    # the saved model reloads as the export loads it, and classifies an input of the processor's size
    if arch == "pvt":  # transformers' own miss (edgeport.matrix.KNOWN_MISSES): PvtConfig reloads with 1000 labels
        with pytest.raises(RuntimeError, match="size mismatch"):
            transformers.AutoModelForImageClassification.from_pretrained(str(model))
        return
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(str(model)).eval()
    assert type(reloaded).__name__ == (spec.model_class or type(reloaded).__name__)
    with torch.no_grad():
        assert reloaded(pixel_values=torch.zeros(1, 3, pre.height, pre.width)).logits.shape == (1, 2)


def test_every_image_classifier_type_is_in_the_matrix_or_left_out_with_a_reason():
    """transformers' image-classification auto map, exactly: each type is built (ARCHITECTURES) or
    left out (LEFT_OUT) with its reason, never both; a package named as missing is still missing."""
    import importlib.util
    import re

    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    types = set(MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)
    assert not set(ARCHITECTURES) & set(LEFT_OUT)
    assert types - set(ARCHITECTURES) - set(LEFT_OUT) == set(), "new image classifiers: build them or leave them out"
    assert (set(ARCHITECTURES) | set(LEFT_OUT)) - types == set(), "not image classifiers of this transformers"
    for model_type, why in LEFT_OUT.items():
        assert why.strip(), model_type
        for package in re.findall(r"the (\w+) package", why):
            assert importlib.util.find_spec(package) is None, f"{package} is installed now: build {model_type}"


def test_matrix_on_deit_and_convnext(calib_dir, faces_dir, tmp_path):
    import shutil

    from edgeport.validation.budgets import Budget

    train = tmp_path / "train"  # the calibration faces in class folders, by UTKFace's gender digit
    for path in sorted(calib_dir.glob("*.jpg")):
        folder = train / ("female" if path.name.split("_")[1] == "1" else "male")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
    budgets = {"fp32": Budget(min_agreement=1.0, max_abs_diff=1e-4)}
    opts = MatrixOptions(out_dir=tmp_path / "matrix", eval_dir=faces_dir, calibration_dir=calib_dir,
                         train_dir=train, variants=QUICK,
                         archs=["deit", "convnext"], budgets=budgets,  # a ViT with a crop, a CNN; all: make matrix
                         run_settings=RunSettings(runs=2, warmup=1), train_steps=5, train_images=16,
                         doc=tmp_path / "docs" / "compatibility.md", progress=False, isolate=False)
    result = run_matrix(opts)
    rows = {row["arch"]: row for row in result["architectures"]}
    assert list(rows) == ["deit", "convnext"]
    for arch, row in rows.items():
        assert "error" not in row, row
        assert row["training"]["steps"] == 5
        by_name = {v["name"]: v for v in row["variants"]}
        assert list(by_name) == QUICK
        for name in QUICK:  # every fp32 file of every architecture within the 1e-4 budget
            assert by_name[name]["passed"], (arch, by_name[name])
            assert by_name[name]["max_abs_diff"] <= 1e-4
    # DeiT's processor crops 32 out of 40: the export takes the processor's size, not config.image_size
    manifest = json.loads((tmp_path / "matrix" / "deit" / "export" / "manifest.json").read_text())
    assert manifest["preprocessing"]["do_center_crop"] and manifest["preprocessing"]["height"] == 32
    page = (tmp_path / "docs" / "compatibility.md").read_text()  # docs/ made by the run
    assert page == (tmp_path / "matrix" / "compatibility.md").read_text()
    for arch in rows:
        assert f"| {arch} | pass | pass |" in page and f"## {arch}" in page
    assert "4 of 4 architecture x variant cells pass" in page
    assert json.loads((tmp_path / "matrix" / "matrix.json").read_text())["variants"] == QUICK


@pytest.mark.parametrize("arch, step, setting, size", [
    ("resnet", "tflite-fp32", "max_pool_paddings_as_zeros", 32),
    ("levit", "tflite-fp32", "hard_swish_fused", 64),
    ("efficientnet", "onnx-fp32", "average_pools_as_global", 32),
    ("hiera", "tflite-int8", "integer_forms.reduce_max_as_negated_min", 64),
    # and F.normalize's DIV(x, clamped norm) as MUL(x, RSQRT): the trained SwiftFormer's integer
    # DIV aborted ("data[i] != zero_point")
    ("swiftformer", "tflite-int8", "integer_forms.tile_as_broadcast_to,reciprocal_sqrt", 64)])
def test_full_integer_files_are_made_after_the_rewrites(arch, step, setting, size, calib_dir, faces_dir, tmp_path):
    """ResNet's MaxPool padding constant and LeViT's spelled-out HardSwish kept them from full integer;
    EfficientNet's kernel-larger-than-input AveragePool was computed wrong by onnxruntime and TFLite;
    Hiera's SHAPE and REDUCE_MAX and SwiftFormer's TILE have no integer form in ai-edge-quantizer
    (converters.tflite_graph.integer_forms); SwiftFormer's L2 normalization divides by a computed
    norm (converters.tflite_graph.reciprocal_sqrt)."""
    import numpy as np

    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model
    from edgeport.runtimes import runner_class

    model = make_model(arch, tmp_path / arch)
    out = tmp_path / "out"
    result = export_model(arch, resolve_source(str(model)), out, variants=["tflite-fp32", "tflite-int8"],
                          images_dir=None, calibration_dir=calib_dir, eval_dir=faces_dir, progress=False,
                          precision_search=False, isolate=False)  # the rewrites are under test here, not the search
    assert result.failed == [], result.manifest
    record = next(v for v in result.manifest["variants"] if v["name"] == step)
    for path in setting.split(","):
        value = record["settings"]
        for key in path.split("."):
            value = value[key]
        assert value >= 1, path
    full = next(v for v in result.manifest["variants"] if v["name"] == "tflite-int8")
    assert full["settings"]["float_compute_ops"] == []
    batch = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with runner_class("torch")(str(model)) as ref, runner_class("tflite")(str(out / "model_fp32.tflite")) as lite, \
            runner_class("onnxruntime")(str(out / "model.onnx")) as onnx:
        expected = ref.infer(batch)
        for runner in (lite, onnx):  # the rewrites are exact
            assert float(np.abs(runner.infer(batch) - expected).max()) < 1e-4
    if "reciprocal_sqrt" in setting:  # applied to the int8 step's float source: the same outputs in float
        from edgeport.converters.tflite_graph import reciprocal_sqrt

        rewritten, count = reciprocal_sqrt((out / "model_fp32.tflite").read_bytes())
        assert count == record["settings"]["reciprocal_sqrt"]
        rewritten_path = tmp_path / "rewritten.tflite"
        rewritten_path.write_bytes(rewritten)
        with runner_class("tflite")(str(rewritten_path)) as lite:
            assert float(np.abs(lite.infer(batch) - expected).max()) < 1e-4


def test_static_int8_survives_failed_symbolic_shape_inference_and_leaves_no_litter(calib_dir, faces_dir,
                                                                                     tmp_path, monkeypatch):
    """Swinv2's Expand stops onnxruntime's symbolic shape inference; the step goes on, and cleans up."""
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    monkeypatch.chdir(tmp_path)
    model = make_model("swinv2", tmp_path / "swinv2")
    result = export_model("swinv2", resolve_source(str(model)), tmp_path / "out", variants=["onnx-int8-static"],
                          images_dir=None, calibration_dir=calib_dir, eval_dir=faces_dir, isolate=False,
                          progress=False)
    assert result.failed == [], result.manifest
    static = next(v for v in result.manifest["variants"] if v["name"] == "onnx-int8-static")
    assert static["settings"]["symbolic_shape_inference"].startswith("skipped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "swinv2"]  # nothing left in the working folder


def test_reduce_l2_becomes_standard_ops_with_the_same_values():
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgeport.converters.onnx_rewrites import expand_reduce_l2

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph([helper.make_node("ReduceL2", ["x", "axes"], ["y"], keepdims=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 3])], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert expand_reduce_l2(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["ReduceSumSquare", "Sqrt"]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-6)


def test_a_model_optimum_cannot_export_goes_through_torch_dynamo(calib_dir, faces_dir, tmp_path):
    """MobileViTV2: optimum has no config for it, and TorchScript cannot export its nn.Fold.

    Its GroupNorms divide by a computed std: TFLite's integer DIV aborted on it (a channel whose
    variance rounds to zero), so the full-integer file computes 1/std as RSQRT, with the chain
    that computes it in int16, both found in the graph.
    """
    import numpy as np
    import onnxruntime as ort

    from edgeport.converters.onnx_export import export_onnx
    from edgeport.runtimes import runner_class

    model = make_model("mobilevitv2", tmp_path / "m")
    settings = export_onnx(str(model), tmp_path / "m.onnx", input_size=(64, 64))
    assert settings["exporter"] == "torch.onnx dynamo" and "optimum failed" in settings["exporter_fallback_reason"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert session.get_inputs()[0].shape == ["batch_size", 3, 64, 64]
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with runner_class("torch")(str(model)) as ref:
        expected = ref.infer(batch)
    assert float(np.abs(session.run(None, {"pixel_values": batch})[0] - expected).max()) < 1e-4

    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    out = tmp_path / "out"
    result = export_model("m", resolve_source(str(model)), out, variants=["onnx-int8-dynamic", "tflite-int8"],
                          images_dir=None, calibration_dir=calib_dir, eval_dir=faces_dir, progress=False,
                          precision_search=False, isolate=False)
    assert result.failed == [], result.manifest  # dynamic int8 used to trip on the exporter's weight value_info
    full = next(v for v in result.manifest["variants"] if v["name"] == "tflite-int8")
    assert full["settings"]["int16_divisor_ops"] > 0 and full["settings"]["reciprocal_sqrt"] > 0
    with runner_class("tflite")(str(out / "model_int8.tflite")) as lite:  # no integer DIV abort
        assert np.isfinite(lite.infer(batch)).all()


def test_reciprocal_sqrt_rewrite_keeps_the_float_outputs(exported_tiny):
    """DIV(1, SQRT(v)) -> RSQRT(v) in every LayerNorm of the tiny ViT: same outputs in float."""
    import numpy as np

    from ai_edge_litert.interpreter import Interpreter

    from edgeport.converters.tflite_graph import reciprocal_sqrt

    source = (exported_tiny / "model_fp32.tflite").read_bytes()
    rewritten, count = reciprocal_sqrt(source)
    assert count == 5  # 2 layers x 2 LayerNorms + the final one
    batch = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    outs = []
    for data in (source, rewritten):
        interpreter = Interpreter(model_content=data)
        runner = interpreter.get_signature_runner()
        outs.append(next(iter(runner(**{next(iter(interpreter.get_signature_list()["serving_default"]["inputs"])): batch}).values())))
    assert float(np.abs(outs[0] - outs[1]).max()) < 1e-5


def test_a_tflite_file_that_computes_something_else_falls_back_to_the_other_backend(calib_dir, faces_dir,
                                                                                      tmp_path):
    """FocalNet: flatbuffer_direct's file runs but is 2.0 off; the TensorFlow backend's is kept."""
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    import shutil

    from edgeport.matrix import train_quickly

    model = make_model("focalnet", tmp_path / "focalnet")
    # With random weights the wrong file still lands within tolerance; trained weights show it
    # (1.6 off after 100 steps, 3.1 after the matrix's 600; tolerance 1e-3), so train as the matrix
    # does, briefly, on the 8 calibration faces.
    train = tmp_path / "train"
    for path in sorted(calib_dir.glob("*.jpg")):
        folder = train / ("female" if path.name.split("_")[1] == "1" else "male")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
    train_quickly(model, train, steps=100, max_images=8)
    result = export_model("focalnet", resolve_source(str(model)), tmp_path / "out", variants=["tflite-fp32"],
                          images_dir=None, calibration_dir=calib_dir, eval_dir=faces_dir, progress=False,
                          isolate=False)
    assert result.failed == [], result.manifest
    settings = next(v for v in result.manifest["variants"] if v["name"] == "tflite-fp32")["settings"]
    assert settings["backend"] == "onnx2tf tf_converter"
    assert "differs from the ONNX model" in settings["fallback_reason"] and settings["onnx_max_abs_diff"] < 1e-4


def test_a_failed_int8_cell_is_explained_from_its_search():
    """The page's reason for an int8 miss comes from the search's own record, both ways it can miss."""
    from edgeport.matrix import render_markdown, search_summary

    def settings(passed: bool) -> dict:
        rounds = [{"raised": 0, "agreement": 0.96, "agreement_lower": 0.94, "accuracy_drop": 0.5, "passed": False},
                  {"raised": 1, "agreement": 0.992, "agreement_lower": 0.98, "accuracy_drop": -0.78,
                   "passed": passed, "chosen": True}]
        return {"precision_search": {"holdout_images": 128, "passed_on_holdout": passed, "candidates": 16,
                                     "raised_to": "int16 activations", "raised": [{"name": "MEAN"}],
                                     "rounds": rounds}}

    assert search_summary({}) is None
    cell = {"passed": False, "max_abs_diff": 0.9, "agreement": 0.98, "accuracy_drift_points": -1.5,
            "size_bytes": 1024, "p50_ms": 1.0, "why": "accuracy_drop_points 1.5 (budget <= 1)", "made_by": None}
    row = {"arch": "somenet", "processor": "P", "note": None, "parameters": 10, "reference_accuracy": 0.7,
           "variants": [{**cell, "name": "tflite-int8", "search": search_summary(settings(True))},
                        {**cell, "name": "tflite-int8-io", "search": search_summary(settings(False))},
                        {**cell, "name": "onnx-fp16", "passed": True, "search": None}]}
    page = render_markdown({"variants": ["onnx-fp16", "tflite-int8", "tflite-int8-io"], "date": "d",
                            "edgeport_version": "0", "machine": {"cpu": "c", "cores": 2, "python": "3.11"},
                            "seconds": 60, "weights": "w", "eval_dir": "e", "architectures": [row]})
    why = [line for line in page.splitlines() if line.startswith("Why:")]
    assert len(why) == 2
    assert "`tflite-int8`" in why[0] and "passed on its 128 held-out" in why[0] and "1 of 16 raised" in why[0]
    assert "(MEAN)" in why[0] and "0.78 points" in why[0]
    assert "`tflite-int8-io`" in why[1] and "no file of the precision search's 2 rounds passed" in why[1]
    assert "98.0%" in why[1]


def test_the_onnx_file_is_traced_at_the_size_it_takes(tmp_path):
    """BiT pads "SAME" by the input's size: traced at optimum's default 64x64 and pinned to its
    processor's 32x32, onnx-fp32 was 0.15 off PyTorch (2.15 once trained)."""
    import numpy as np
    import onnxruntime as ort

    from edgeport.converters.onnx_export import export_onnx
    from edgeport.runtimes import runner_class

    model = make_model("bit", tmp_path / "bit")
    export_onnx(str(model), tmp_path / "m.onnx", input_size=(32, 32))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with runner_class("torch")(str(model)) as reference:
        expected = reference.infer(x)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"pixel_values": x})[0]
    assert float(np.abs(got - expected).max()) < 1e-4
