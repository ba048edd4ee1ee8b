"""The bench machinery on a tiny model (the ViT-B/16 run itself is `make bench`, never a test)."""
from __future__ import annotations

import json
import sys

from edgeport.bench import BenchOptions, judge_targets, run_bench
from edgeport.config import ModelEntry
from edgeport.converters.child_process import measure_command
from edgeport.stage import _describe_exit, run_stage
from edgeport.validation.harness import RunSettings


def test_bench_on_a_tiny_model_writes_every_section(tiny_vit, calib_dir, faces_dir, tmp_path):
    entry = ModelEntry(name="tiny", source=str(tiny_vit), eval_dir=faces_dir, calibration_dir=calib_dir,
                       variants=["onnx-fp32"])  # the timing of a validation: one variant is enough
    opts = BenchOptions(out_dir=tmp_path / "bench", arch="tiny",
                        variants=["onnx-fp32", "onnx-int8-dynamic", "onnx-int8-static"],
                        calibration_dir=calib_dir, warmup=1, runs=3, throughput_runs=2, baseline=False,
                        validate_model=entry, validate_eval=faces_dir, run_settings=RunSettings(runs=2),
                        search_cost=True)
    result = run_bench(opts)
    on_disk = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert on_disk["export"]["variants"] == result["export"]["variants"]
    stages = {s["name"]: s for s in result["export"]["stages"]}
    assert set(stages) == {"onnx-fp32", "onnx-int8-dynamic", "onnx-int8-static"}
    # measured in a child process: a real peak, far above nothing and below the whole machine
    assert all(20 < s["peak_rss_mb"] < 8000 and s["seconds"] > 0 for s in stages.values())
    lat = {r["name"]: r for r in result["latency"]}
    assert set(lat) == {"pytorch-eager", "onnx-fp32", "onnx-int8-dynamic", "onnx-int8-static"}
    for row in lat.values():
        assert row["error"] is None and 0 < row["p50_ms"] <= row["p90_ms"] and row["images_per_s"] > 0
    assert lat["onnx-int8-dynamic"]["size_bytes"] < lat["onnx-fp32"]["size_bytes"]
    v = result["validation"]
    assert v["images"] == 8 and v["variants"] == 1 and v["seconds"] > 0
    # the search timed on a second export (probe head), against the main export's plain quantization
    search = result["precision_search"]
    assert search["probe_images"] == 8
    (row,) = search["variants"]
    assert row["name"] == "onnx-int8-static" and row["status"] == "ok"
    assert row["plain_seconds"] == stages["onnx-int8-static"]["seconds"] and row["searched_seconds"] > 0
    assert row["ratio"] == round(row["searched_seconds"] / row["plain_seconds"], 2) and row["rounds"] >= 1
    assert row["first_round"]["raised"] == 0 and 0 <= row["first_round"]["agreement"] <= 1
    floor = result["compute_floor"]
    assert floor["gemm_gflops"] > 0 and floor["floor_ms"] > 0
    assert abs(floor["model_gflop"] * 1e3 / floor["gemm_gflops"] - floor["floor_ms"]) < 0.01 * floor["floor_ms"]
    assert floor["int8_gemm_gops"] > 0
    assert abs(floor["model_gflop"] * 1e3 / floor["int8_gemm_gops"] - floor["int8_floor_ms"]) < 0.01 * floor["int8_floor_ms"]
    targets = {t["target"].split(" <=")[0]: t for t in result["targets"]}
    assert "measured in this run" in targets["best fp32 variant"]["target"]
    assert "int8 floor measured in this run" in targets["best int8 variant"]["value"]
    # only 3 of the 10 variants ran: the target is not judged, and the row says why
    assert targets["export of all variants"]["met"] is None
    assert "only 3 of 10 variants" in targets["export of all variants"]["value"]
    search_target = targets["onnx-int8-static: the precision search"]
    assert search_target["met"] is (row["ratio"] <= 2.0) and f"({row['ratio']:.2f}x)" in search_target["value"]
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert "| onnx-int8-dynamic | onnxruntime | int8 |" in md and "## Validation of a bundled model" in md
    assert "## The int8 precision search, same run" in md and f"| {row['ratio']:.2f}x |" in md
    from conftest import REPO

    for text in (md, (tmp_path / "bench" / "bench.json").read_text()):  # nothing of this machine's layout
        assert str(tmp_path) not in text and str(REPO) not in text


def test_targets_report_misses_and_failed_variants():
    from edgeport.variants import DEFAULT_VARIANTS

    variants = [{"name": n, "status": "failed" if n == "tflite-int8" else "ok", "error": None, "size_bytes": 1}
                for n in DEFAULT_VARIANTS]
    result = {
        "export": {"seconds": 400.0, "peak_rss_mb": 9000.0, "stages": [], "variants": variants},
        "latency": [{"name": "onnx-fp32", "runtime": "onnxruntime", "precision": "fp32", "p50_ms": 120.0},
                    {"name": "onnx-int8-dynamic", "runtime": "onnxruntime", "precision": "int8", "p50_ms": 20.0}],
        "validation": {"images": 400, "variants": 10, "seconds": 60.0, "passed": {"onnx-int8-dynamic": False}},
    }
    rows = {t["target"].split(" <=")[0]: t for t in judge_targets(result)}
    assert rows["export of all variants"]["met"] is False and "tflite-int8" in rows["export of all variants"]["value"]
    assert rows["export peak memory"]["met"] is False
    assert rows["best fp32 variant"]["met"] is False
    int8 = rows["best int8 variant"]
    assert int8["met"] is False and "MISSED" in int8["value"]  # fast enough, but over its accuracy budget
    validate = rows["validate 2000 images x all variants"]
    assert validate["met"] is False and "~300 s per 2000" in validate["value"]


def test_int8_floor_target_names_the_fastest_int8_file_of_each_runtime():
    from edgeport.variants import DEFAULT_VARIANTS

    variants = [{"name": n, "status": "ok", "error": None, "size_bytes": 1} for n in DEFAULT_VARIANTS]
    latency = [{"name": "onnx-int8-dynamic", "runtime": "onnxruntime", "precision": "int8", "p50_ms": 34.0},
               {"name": "onnx-int8-static", "runtime": "onnxruntime", "precision": "int8", "p50_ms": 44.0},
               {"name": "openvino-int8", "runtime": "openvino", "precision": "int8", "p50_ms": 31.0},
               {"name": "tflite-int8-dynamic", "runtime": "tflite", "precision": "int8", "p50_ms": 36.0}]

    def row(floor_ms: float, passed: bool | None) -> dict:
        result = {"export": {"seconds": 1.0, "peak_rss_mb": 1.0, "stages": [], "variants": variants},
                  "latency": latency, "compute_floor": {"floor_ms": 80.0, "model_gflop": 35.1, "gemm_gflops": 440.0,
                                                        "int8_floor_ms": floor_ms, "int8_gemm_gops": 1500.0}}
        if passed is not None:
            result["validation"] = {"images": 2000, "variants": 4, "seconds": 60.0, "passed": {"openvino-int8": passed}}
        return next(t for t in judge_targets(result) if t["target"].startswith("fastest int8 variant of any runtime"))

    met = row(28.0, True)  # 31 / 28 = 1.11x
    assert met["met"] is True and "openvino-int8 31.0 ms = 1.11x" in met["value"]
    assert "onnx-int8-dynamic 34.0 ms" in met["value"] and "onnx-int8-static" not in met["value"]  # fastest per runtime
    assert row(25.0, True)["met"] is False  # 1.24x
    assert row(28.0, False)["met"] is False and "MISSED" in row(28.0, False)["value"]
    assert row(28.0, None)["met"] is None  # fast enough, budget not checked: not a met target


def test_vit_b16_compute_matches_its_known_size():
    """ViT-B/16 at 224x224 is about 17.6 G multiply-accumulates (35 GFLOP) per image."""
    from edgeport.bench import ARCHS, model_macs

    assert 17.4e9 < model_macs(ARCHS["vit-b16"]) < 17.7e9
    assert model_macs(ARCHS["tiny"]) < model_macs(ARCHS["vit-b16"]) / 1000


def test_a_crashing_step_is_named_with_its_signal(tmp_path):
    seconds, peak, code = measure_command([sys.executable, "-c", "import os; os.abort()"])
    assert code < 0 and "SIGABRT" in _describe_exit(code)
    broken = run_stage("onnx-fp32", tmp_path / "no-such-context")  # the child cannot even load its input
    assert broken.error and "without a result" in broken.error and broken.settings is None
