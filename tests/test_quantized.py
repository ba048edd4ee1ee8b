"""Quantized and fp16 variants: each runtime runs each format; builtin-only TFLite; calibration rules."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeport.converters.onnx2tf_tool import ConversionError
from edgeport.converters.tflite_ops import non_builtin_operators, require_builtin_ops
from edgeport.runtimes import runner_class
from edgeport.validation.dataset import load_eval_arrays, scan_eval_set
from edgeport.validation.preprocess import Preprocessing

QUANTIZED = [
    ("onnxruntime", "model_fp16.onnx", 5e-3),
    ("onnxruntime", "model_int8_dynamic.onnx", 0.1),
    ("onnxruntime", "model_int8_static.onnx", 0.5),
    ("tflite", "model_fp16.tflite", 5e-3),
    ("tflite", "model_int8_dynamic.tflite", 0.1),
    ("tflite", "model_int8.tflite", 0.5),
    ("tflite", "model_int8_io.tflite", 0.5),
]


@pytest.fixture(scope="module")
def batch_and_reference(exported_tiny, tiny_vit, faces_dir):
    pre = Preprocessing.from_file(exported_tiny / "preprocessor_config.json")
    inputs, _, _ = load_eval_arrays(scan_eval_set(faces_dir, ["female", "male"]), pre, progress=False)
    with runner_class("torch")(tiny_vit) as r:
        return inputs, r.infer(inputs)


@pytest.fixture(scope="module")
def calib_nhwc(exported_tiny, calib_dir) -> np.ndarray:
    """The calibration images as the TFLite quantizer takes them (N x H x W x C, preprocessed)."""
    from edgeport.pipeline import calibration_arrays, list_images

    pre = Preprocessing.from_file(exported_tiny / "preprocessor_config.json")
    return np.ascontiguousarray(calibration_arrays(list_images(calib_dir), pre).transpose(0, 2, 3, 1))


@pytest.mark.parametrize("runtime, artifact, atol", QUANTIZED)
def test_runtime_runs_quantized_format(runtime, artifact, atol, exported_tiny, batch_and_reference):
    inputs, reference = batch_and_reference
    with runner_class(runtime)(exported_tiny / artifact) as runner:
        out = runner.infer(inputs)
    assert out.shape == reference.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    diff = np.abs(out - reference).max()
    assert 0 < diff < atol  # quantized: close to the reference, but not bit-identical


def test_quantized_files_are_smaller(exported_tiny):
    fp32 = (exported_tiny / "model_fp32.tflite").stat().st_size
    for name in ("model_int8.tflite", "model_int8_io.tflite", "model_int8_dynamic.tflite", "model_fp16.tflite"):
        assert (exported_tiny / name).stat().st_size < 0.8 * fp32, name


def test_int8_io_records_quantization_and_takes_int8(exported_tiny):
    manifest = json.loads((exported_tiny / "manifest.json").read_text())
    rec = {v["name"]: v for v in manifest["variants"]}
    io = rec["tflite-int8-io"]["io"]
    assert io["input"]["dtype"] == "int8" and io["output"]["dtype"] == "int8"
    assert io["input"]["scale"] > 0 and isinstance(io["input"]["zero_point"], int)
    assert io["input"]["shape"][-1] == 3  # NHWC
    assert rec["tflite-int8"]["io"]["input"]["dtype"] == "float32"
    for name in ("tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8", "tflite-int8-io"):
        assert rec[name]["status"] == "ok" and "GELU" in rec[name]["settings"]["ops"]


def test_calibration_images_recorded_and_disjoint_from_eval(exported_tiny, calib_dir, faces_dir):
    manifest = json.loads((exported_tiny / "manifest.json").read_text())
    cal = manifest["calibration"]
    assert sorted(cal["images"]) == sorted(p.name for p in calib_dir.glob("*.jpg"))
    from edgeport.converters.checksums import sha256_file

    eval_hashes = {sha256_file(p) for p in faces_dir.rglob("*.jpg")}
    assert eval_hashes and not eval_hashes & set(cal["sha256"])


def test_bundled_calibration_and_eval_sets_are_disjoint():
    from edgeport.config import load_config
    from edgeport.converters.checksums import sha256_file

    for model in load_config().models:
        calib = {sha256_file(p) for p in model.calibration_dir.rglob("*") if p.is_file()}
        evals = {sha256_file(p) for p in model.eval_dir.rglob("*") if p.is_file()}
        assert calib and evals and not calib & evals, model.name


def test_export_refuses_calibration_overlapping_eval(tiny_vit, faces_dir, tmp_path):
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copy(next(faces_dir.rglob("*.jpg")), calib / "copied.jpg")
    with pytest.raises(ValueError, match="also in the calibration set"):
        export_model("t", resolve_source(str(tiny_vit)), tmp_path / "out", variants=["onnx-int8-static"],
                     images_dir=None, calibration_dir=calib, eval_dir=faces_dir)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_validate_refuses_eval_set_used_for_calibration(exported_copy, calib_dir, tmp_path):
    from edgeport.config import DEFAULT_BUDGETS
    from edgeport.pipeline import validate_export
    from edgeport.validation.harness import RunSettings

    ev = tmp_path / "ev" / "male"
    ev.mkdir(parents=True)
    shutil.copy(next(calib_dir.glob("*.jpg")), ev)
    with pytest.raises(ValueError, match="used to calibrate"):
        validate_export(exported_copy, tmp_path / "ev", DEFAULT_BUDGETS, RunSettings(runs=1), progress=False)


@pytest.fixture(scope="module")
def flex_tflite(tmp_path_factory):
    """A .tflite that needs a Flex (SELECT_TF_OPS) op."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def f(x):
        return tf.math.erf(x)  # exact erf has no TFLite builtin: it becomes FlexErf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path_factory.mktemp("flex") / "flex.tflite"
    path.write_bytes(conv.convert())
    return path


def test_flex_op_is_detected(flex_tflite, exported_tiny):
    assert non_builtin_operators(flex_tflite) == ["FlexErf"]
    assert non_builtin_operators(exported_tiny / "model_int8.tflite") == []
    with pytest.raises(ConversionError, match="FlexErf"):
        require_builtin_ops(flex_tflite)


def test_flex_op_fails_the_variant_in_the_report(tiny_vit, calib_dir, faces_dir, flex_tflite, tmp_path, monkeypatch):
    import edgeport.converters.tflite_fp32 as tflite_fp32
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model

    real_run = tflite_fp32.run_onnx2tf

    def run_then_swap(args, *, work_dir, log_path):  # onnx2tf "produces" a Flex model
        real_run(args, work_dir=work_dir, log_path=log_path)
        out = args[args.index("-o") + 1]
        shutil.copy(flex_tflite, f"{out}/model_b1_float32.tflite")

    monkeypatch.setattr(tflite_fp32, "run_onnx2tf", run_then_swap)
    result = export_model("t", resolve_source(str(tiny_vit)), tmp_path / "out", variants=["tflite-fp32"],
                          images_dir=None, calibration_dir=calib_dir, eval_dir=faces_dir, isolate=False)
    rec = {v["name"]: v for v in result.manifest["variants"]}
    assert rec["onnx-fp32"]["status"] == "ok"
    assert rec["tflite-fp32"]["status"] == "failed" and "FlexErf" in rec["tflite-fp32"]["error"]
    assert not (tmp_path / "out" / "model_fp32.tflite").exists()


def test_linear_layers_become_fully_connected_with_identical_outputs(exported_tiny, batch_and_reference):
    """tflite-fp32's BATCH_MATMUL -> FULLY_CONNECTED rewrite changes ops, not outputs."""
    from edgeport.converters.tflite_graph import batch_matmul_to_fully_connected
    from edgeport.converters.tflite_ops import tflite_operators

    manifest = json.loads((exported_tiny / "manifest.json").read_text())
    fp32 = {v["name"]: v for v in manifest["variants"]}["tflite-fp32"]
    assert fp32["settings"]["linear_layers_as_fully_connected"] > 0
    assert "FULLY_CONNECTED" in fp32["settings"]["ops"]
    # Nothing constant is left to rewrite, and the rewritten file agrees with PyTorch as
    # closely as any fp32 variant must (a wrong transpose would be off by whole logits).
    data, count = batch_matmul_to_fully_connected((exported_tiny / "model_fp32.tflite").read_bytes())
    assert count == 0
    inputs, reference = batch_and_reference
    with runner_class("tflite")(exported_tiny / "model_fp32.tflite") as runner:
        assert np.abs(runner.infer(inputs) - reference).max() < 1e-4
    assert "BATCH_MATMUL" in tflite_operators(exported_tiny / "model_fp32.tflite")  # attention's act x act stays


def _fully_connected_biases(data: bytes) -> tuple[list[bool], int]:
    """(whether each FULLY_CONNECTED has a bias input, the number of ADD ops) of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    return ([len(op["inputs"]) > 2 and int(op["inputs"][2]) >= 0 for op in ops if op["op_name"] == "FULLY_CONNECTED"],
            sum(op["op_name"] == "ADD" for op in ops))


def test_linear_biases_move_into_fully_connected_in_the_dynamic_file(exported_tiny):
    """tflite-int8-dynamic's FULLY_CONNECTEDs carry their Linear layer's bias instead of an ADD
    after them; in float the same rewrite changes ops, not outputs."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.converters.tflite_graph import fully_connected_bias

    source = (exported_tiny / "model_fp32.tflite").read_bytes()
    fp32_biases, fp32_adds = _fully_connected_biases(source)
    rewritten, count = fully_connected_bias(source)
    assert count == 12  # 2 layers x (query, key, value, attention output, 2 MLP); the classifier has its bias
    biases, adds = _fully_connected_biases(rewritten)
    assert fp32_biases.count(False) == count and all(biases) and adds == fp32_adds - count  # residual ADDs stay
    assert fully_connected_bias(rewritten) == (rewritten, 0)
    batch = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    outs = []
    for data in (source, rewritten):
        interpreter = Interpreter(model_content=data)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreter.invoke()
        outs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    assert float(np.abs(outs[0] - outs[1]).max()) < 1e-5

    manifest = json.loads((exported_tiny / "manifest.json").read_text())
    rec = {v["name"]: v for v in manifest["variants"]}
    assert rec["tflite-int8-dynamic"]["settings"]["linear_biases_in_fully_connected"] == count
    dynamic_biases, _ = _fully_connected_biases((exported_tiny / "model_int8_dynamic.tflite").read_bytes())
    assert all(dynamic_biases)
    # the full-integer files keep the ADDs: their 16x8 FULLY_CONNECTED with a bias ran 3x slower
    int8_biases, _ = _fully_connected_biases((exported_tiny / "model_int8.tflite").read_bytes())
    assert int8_biases.count(False) == count


def test_full_integer_files_compute_only_in_integers(exported_tiny):
    from edgeport.converters.tflite_ops import float_compute_ops, op_precisions

    manifest = json.loads((exported_tiny / "manifest.json").read_text())
    rec = {v["name"]: v for v in manifest["variants"]}
    for name, filename in (("tflite-int8", "model_int8.tflite"), ("tflite-int8-io", "model_int8_io.tflite")):
        assert float_compute_ops(exported_tiny / filename) == []
        assert rec[name]["settings"]["float_compute_ops"] == []
        assert any(k.startswith("FULLY_CONNECTED:INT8") for k in op_precisions(exported_tiny / filename))
    assert "FULLY_CONNECTED" in float_compute_ops(exported_tiny / "model_fp32.tflite")
    # The classifier (the op writing the output) computes with int16 activations in tflite-int8,
    # and in int8 in tflite-int8-io, whose output must stay int8.
    assert op_precisions(exported_tiny / "model_int8.tflite").get("FULLY_CONNECTED:INT16") == 1
    assert "FULLY_CONNECTED:INT16" not in op_precisions(exported_tiny / "model_int8_io.tflite")
    # ...and tflite-int8's logits still leave the file as float32 (a DEQUANTIZE after the int16 op).
    assert rec["tflite-int8"]["io"]["output"]["dtype"] == "float32"
    assert rec["tflite-int8"]["settings"]["activations"] == "int8"


def test_int16_activations_are_16x8_and_closer_to_fp32(exported_tiny, calib_nhwc, batch_and_reference, tmp_path):
    """activations="int16": every activation int16, weights int8, integer-only, same I/O types as
    the int8 files, and nearer the float model than int8 activations on the same calibration."""
    from edgeport.converters.tflite_int8 import convert_tflite_int8
    from edgeport.converters.tflite_ops import float_compute_ops, op_precisions
    from edgeport.runtimes.tflite_runner import tflite_io_details

    fp32 = exported_tiny / "model_fp32.tflite"
    cache = tmp_path / "cache"
    settings = convert_tflite_int8(fp32, tmp_path / "a16.tflite", calib_nhwc, activations="int16",
                                   calibration_cache=cache)
    convert_tflite_int8(fp32, tmp_path / "a16_io.tflite", calib_nhwc, int8_io=True, activations="int16",
                        calibration_cache=cache)
    assert settings["activations"] == "int16"
    for name in ("a16.tflite", "a16_io.tflite"):
        precisions = op_precisions(tmp_path / name)
        assert float_compute_ops(tmp_path / name) == []
        assert precisions.get("FULLY_CONNECTED:INT16", 0) > 0 and "FULLY_CONNECTED:INT8" not in precisions
        assert "BATCH_MATMUL:INT16" in precisions and "SOFTMAX:INT16" in precisions
    io = tflite_io_details(str(tmp_path / "a16.tflite"))
    assert io["input"]["dtype"] == "float32" and io["output"]["dtype"] == "float32"
    io = tflite_io_details(str(tmp_path / "a16_io.tflite"))
    assert io["input"]["dtype"] == "int8" and io["output"]["dtype"] == "int8"
    # Same size class as the int8 file: the weights are int8 in both.
    assert (tmp_path / "a16.tflite").stat().st_size < 1.2 * (exported_tiny / "model_int8.tflite").stat().st_size

    inputs, reference = batch_and_reference
    with runner_class("tflite")(exported_tiny / "model_fp32.tflite") as runner:
        ref = runner.infer(inputs)
    errors = {}
    for name, path in (("int8", exported_tiny / "model_int8.tflite"), ("int16", tmp_path / "a16.tflite")):
        with runner_class("tflite")(path) as runner:
            errors[name] = float(np.abs(runner.infer(inputs) - ref).mean())
    assert errors["int16"] < errors["int8"] / 2, errors  # measured: about 4x smaller; weights are int8 in both


def test_calibration_ranges_are_min_max_over_all_images(exported_tiny, calib_nhwc):
    """Each range covers every calibration image. ai-edge-quantizer's own calibrate() keeps a
    moving average of per-image ranges instead, which clips the larger values."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.converters.ai_edge_quantize import calibrate_min_max

    fp32 = exported_tiny / "model_fp32.tflite"
    ranges = calibrate_min_max(fp32, calib_nhwc)
    interpreter = Interpreter(model_path=str(fp32))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    logits = []
    for image in calib_nhwc:
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
        interpreter.invoke()
        logits.append(interpreter.get_tensor(out["index"]).copy())
    logits = np.concatenate(logits)
    np.testing.assert_allclose(ranges[out["name"]]["min"].min(), logits.min(), rtol=1e-5)
    np.testing.assert_allclose(ranges[out["name"]]["max"].max(), logits.max(), rtol=1e-5)
    np.testing.assert_allclose(ranges[inp["name"]]["min"].min(), calib_nhwc.min(), rtol=1e-5)
    np.testing.assert_allclose(ranges[inp["name"]]["max"].max(), calib_nhwc.max(), rtol=1e-5)


def test_profiled_calibration_equals_the_quantizers_default_mode(exported_tiny, calib_nhwc):
    """The fast (profiler-based) calibration gives what the default mode gives over every image:
    the same tensors, values, shapes and dtypes, so the same quantized file."""
    from ai_edge_quantizer import calibrator, recipe_manager

    from edgeport.converters import ai_edge_quantize as aq

    fp32 = exported_tiny / "model_fp32.tflite"
    fast = aq.calibrate_min_max(fp32, calib_nhwc)
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(aq._calibration_recipe())
    key, name = aq.signature_input(fp32)
    default = aq._run_calibrator(fp32.read_bytes(), key, [{name: image[None]} for image in calib_nhwc], manager,
                                 calibrator.CalibrationMode.CALIBRATION_PRESERVE_ALL_TENSORS)
    assert len(default) > 20 and set(fast) == set(default)
    for tensor, stats in default.items():
        for key in ("min", "max"):
            assert np.asarray(fast[tensor][key]).dtype == np.asarray(stats[key]).dtype
            np.testing.assert_array_equal(fast[tensor][key], stats[key], err_msg=tensor)


def test_profiled_calibration_gives_way_where_it_cannot_stand_in():
    """A tensor the profiler did not see, or a value the default mode leaves out of its range
    (a -inf padding constant), sends the calibration back to the default mode (None here)."""
    from edgeport.converters.ai_edge_quantize import _profiled_as_default

    wanted = {"a": {"min": np.zeros((1, 1, 1)), "max": np.ones((1, 1, 1)), "num_samples": 4},
              "b": {"min": np.zeros((1, 1)), "max": np.ones((1, 1))}}
    seen = {"a": {"min": np.array([-2.0]), "max": np.array([3.0])}, "b": {"min": np.array([0.5]), "max": np.array([1.5])},
            "c": {"min": np.array([0.0]), "max": np.array([1.0])}}
    shaped = _profiled_as_default(seen, wanted)
    assert set(shaped) == {"a", "b"} and shaped["a"]["min"].shape == (1, 1, 1) and shaped["a"]["max"].item() == 3.0
    assert _profiled_as_default({"a": seen["a"]}, wanted) is None
    assert _profiled_as_default({**seen, "b": {"min": np.array([-np.inf]), "max": np.array([1.0])}}, wanted) is None
    assert _profiled_as_default({**seen, "a": {"min": np.array([-3.4e38]), "max": np.array([1.0])}}, wanted) is None
    assert _profiled_as_default({**seen, "b": {"min": np.zeros(2), "max": np.ones(2)}}, wanted) is None


def test_full_integer_export_refuses_a_float_op(exported_tiny, calib_nhwc, tmp_path, monkeypatch):
    """If the recipe left an op in float, the variant fails and no file is left behind."""
    import edgeport.converters.tflite_int8 as tflite_int8

    real_recipe = tflite_int8.full_integer_recipe

    def recipe_with_float_gelu(*, int8_io, **kwargs):
        from ai_edge_quantizer import qtyping, recipe_manager
        from ai_edge_quantizer.recipe import AlgorithmName

        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(real_recipe(int8_io=int8_io, **kwargs))
        manager.add_quantization_config(regex=".*", operation_name=qtyping.TFLOperationName.GELU,
                                        algorithm_key=AlgorithmName.NO_QUANTIZE)
        return manager.get_quantization_recipe()

    monkeypatch.setattr(tflite_int8, "full_integer_recipe", recipe_with_float_gelu)
    out = tmp_path / "int8.tflite"
    with pytest.raises(ConversionError, match="GELU"):
        tflite_int8.convert_tflite_int8(exported_tiny / "model_fp32.tflite", out, calib_nhwc[:4])
    assert not out.exists()


def test_full_integer_variants_share_one_calibration(exported_tiny, calib_nhwc, tmp_path, monkeypatch):
    """tflite-int8-io reuses tflite-int8's calibration and still writes the same file as without it."""
    import edgeport.converters.ai_edge_quantize as ai_edge_quantize
    from edgeport.converters.tflite_int8 import convert_tflite_int8

    fp32 = exported_tiny / "model_fp32.tflite"
    calls = []
    real_calibrate = ai_edge_quantize.calibrate_min_max

    def counting_calibrate(*args, **kwargs):
        calls.append(1)
        return real_calibrate(*args, **kwargs)

    monkeypatch.setattr(ai_edge_quantize, "calibrate_min_max", counting_calibrate)
    cache = tmp_path / "cache"
    convert_tflite_int8(fp32, tmp_path / "a.tflite", calib_nhwc, calibration_cache=cache)
    convert_tflite_int8(fp32, tmp_path / "a_io.tflite", calib_nhwc, int8_io=True, calibration_cache=cache)
    assert len(calls) == 1
    assert len(list(cache.glob("calibration-*.npz"))) == 1
    # Without the cache: the same bytes as the shipped artifacts and as the cached run.
    convert_tflite_int8(fp32, tmp_path / "b_io.tflite", calib_nhwc, int8_io=True)
    assert len(calls) == 2
    assert (tmp_path / "a_io.tflite").read_bytes() == (tmp_path / "b_io.tflite").read_bytes()
    assert (tmp_path / "a.tflite").read_bytes() == (exported_tiny / "model_int8.tflite").read_bytes()
    # Other calibration images are another cache entry, not a stale hit.
    convert_tflite_int8(fp32, tmp_path / "c.tflite", calib_nhwc[:4], calibration_cache=cache)
    assert len(calls) == 3
    assert len(list(cache.glob("calibration-*.npz"))) == 2


def test_tflite_fp32_falls_back_to_the_tensorflow_backend(exported_tiny, calib_dir, batch_and_reference,
                                                          tmp_path, monkeypatch):
    """When flatbuffer_direct fails, tflite-fp32 comes from onnx2tf's TensorFlow backend, says so,
    and is still a correct builtin-only fp32 file."""
    import edgeport.converters.tflite_fp32 as tflite_fp32
    from edgeport.pipeline import list_images

    real_run = tflite_fp32.run_onnx2tf

    def flatbuffer_direct_breaks(args, **kwargs):
        if "flatbuffer_direct" in args:
            raise ConversionError("onnx2tf exited with status 1 (simulated flatbuffer_direct failure)")
        return real_run(args, **kwargs)

    monkeypatch.setattr(tflite_fp32, "run_onnx2tf", flatbuffer_direct_breaks)
    out = tmp_path / "model_fp32.tflite"
    settings = tflite_fp32.convert_tflite_fp32(exported_tiny / "model.onnx", out,
                                               sample_images=list_images(calib_dir), work_dir=tmp_path / "work")
    assert settings["backend"] == "onnx2tf tf_converter"
    assert "simulated flatbuffer_direct failure" in settings["fallback_reason"]
    assert not non_builtin_operators(out)
    inputs, reference = batch_and_reference
    with runner_class("tflite")(out) as runner:
        assert np.abs(runner.infer(inputs) - reference).max() < 1e-4

    def every_backend_breaks(args, **kwargs):
        raise ConversionError(f"simulated failure of {args[args.index('-tb') + 1]}")

    monkeypatch.setattr(tflite_fp32, "run_onnx2tf", every_backend_breaks)
    broken = tmp_path / "broken.tflite"
    with pytest.raises(ConversionError, match="flatbuffer_direct.*\n.*tf_converter"):
        tflite_fp32.convert_tflite_fp32(exported_tiny / "model.onnx", broken,
                                        sample_images=list_images(calib_dir), work_dir=tmp_path / "work2")
    assert not broken.exists()


def test_quantizer_progress_bars_are_off(capsys):
    """ai-edge-quantizer's bars (explicitly enabled for big models) stay out of the step's log."""
    from ai_edge_quantizer.utils import progress_utils

    from edgeport.converters.ai_edge_quantize import _quiet_progress_bars

    _quiet_progress_bars()
    _quiet_progress_bars()  # idempotent: wrapping twice would still work, but is not done
    with progress_utils.ProgressBar(total_steps=10_000, description="Running Calibration:") as bar:
        assert bar._progress_bar.disable
    assert "Running Calibration" not in capsys.readouterr().err


def test_report_names_the_full_integer_activation_width(validated_tiny):
    """report.json carries each full-integer file's activations; report.md calls out int16 ones."""
    import copy

    from edgeport.validation.report import render_markdown

    report = json.loads((validated_tiny / "report.json").read_text())
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["tflite-int8"]["activations"] == by_name["tflite-int8-io"]["activations"] == "int8"
    assert "activations" not in by_name["tflite-fp32"]
    assert "int16 activations" not in (validated_tiny / "report.md").read_text()
    wide = copy.deepcopy(report)
    for v in wide["variants"]:
        if v["name"] in ("tflite-int8", "tflite-int8-io"):
            v["activations"] = "int16"
    assert "tflite-int8, tflite-int8-io: int16 activations, int8 weights (TFLite 16x8" in render_markdown(wide)
