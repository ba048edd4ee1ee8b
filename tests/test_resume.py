"""Interrupted and repeated exports: finished work is kept and reused, changed files are caught."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgeport.cli import main
from edgeport.model_source import resolve_source
from edgeport.pipeline import artifact_sha256, export_model

REPO = Path(__file__).resolve().parent.parent
QUICK = ["onnx-fp32", "onnx-fp16", "onnx-int8-dynamic"]


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_rerun_reuses_up_to_date_artifacts_and_redoes_changed_ones(tiny_vit, tmp_path):
    out = tmp_path / "out"
    export_model("t", resolve_source(str(tiny_vit)), out, variants=QUICK, images_dir=None, isolate=False)
    first = {v["name"]: v for v in _manifest(out)["variants"]}
    assert all(v["status"] == "ok" and len(v["sha256"]) == 64 for v in first.values())
    mtime = (out / "model_fp16.onnx").stat().st_mtime_ns

    (out / "model_int8_dynamic.onnx").write_bytes(b"tampered")
    export_model("t", resolve_source(str(tiny_vit)), out, variants=QUICK, images_dir=None, isolate=False)
    second = {v["name"]: v for v in _manifest(out)["variants"]}
    assert second["onnx-fp32"].get("reused") and second["onnx-fp16"].get("reused")
    assert (out / "model_fp16.onnx").stat().st_mtime_ns == mtime  # not rewritten
    assert not second["onnx-int8-dynamic"].get("reused")
    assert "no longer matches the sha256" in second["onnx-int8-dynamic"]["note"]
    assert artifact_sha256(out / "model_int8_dynamic.onnx") == second["onnx-int8-dynamic"]["sha256"]

    export_model("t", resolve_source(str(tiny_vit)), out, variants=QUICK, images_dir=None, force=True, isolate=False)
    assert not any(v.get("reused") for v in _manifest(out)["variants"])


def test_validate_reports_an_artifact_changed_after_export(exported_copy, faces_dir, tmp_path, capsys):
    (exported_copy / "model_fp16.tflite").write_bytes((exported_copy / "model_fp32.tflite").read_bytes())
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    code = main(["validate", str(exported_copy), "--eval", str(faces_dir), "--no-progress", "--config", str(cfg)])
    assert code == 1
    report = json.loads((exported_copy / "report.json").read_text())
    by_name = {v["name"]: v for v in report["variants"]}
    assert "changed after export" in by_name["tflite-fp16"]["error"]
    assert by_name["tflite-fp32"]["passed"] is True


def test_export_killed_mid_run_finishes_on_rerun_with_identical_artifacts(tiny_vit, tmp_path):
    clean = tmp_path / "clean"
    export_model("t", resolve_source(str(tiny_vit)), clean, variants=QUICK, images_dir=None)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "edgeport", "export", str(tiny_vit), "--out", str(out),
           "--variants", ",".join(QUICK), "--config", str(tmp_path / "none.toml")]
    (tmp_path / "none.toml").write_text("")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill -9 as soon as the first artifact is recorded
        if (out / "manifest.json").exists() and any(
                v.get("sha256") for v in _manifest(out)["variants"]):
            break
        assert proc.poll() is None, "export ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [v for v in _manifest(out)["variants"] if v.get("sha256")]
    assert done and len(done) < len(QUICK)
    # nothing that looks finished except what the manifest vouches for (partial files are hidden temps)
    visible = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert visible <= {"config.json", "preprocessor_config.json", "manifest.json", *(v["path"] for v in done)}

    export_model("t", resolve_source(str(tiny_vit)), out, variants=QUICK, images_dir=None)
    final = {v["name"]: v for v in _manifest(out)["variants"]}
    assert all(v["status"] == "ok" for v in final.values())
    assert final["onnx-fp32"].get("reused")
    for name in QUICK:  # the ONNX exports and conversions are deterministic
        path = final[name]["path"]
        assert artifact_sha256(out / path) == artifact_sha256(clean / path), path


def test_changed_source_weights_are_re_exported(tmp_path):
    from edgeport.random_model import make_random_vit

    model = make_random_vit(tmp_path / "m", seed=0)
    out = tmp_path / "out"
    export_model("t", resolve_source(str(model)), out, variants=["onnx-fp32"], images_dir=None, isolate=False)
    before = _manifest(out)
    make_random_vit(tmp_path / "m", seed=1)  # new weights, same folder
    export_model("t", resolve_source(str(model)), out, variants=["onnx-fp32"], images_dir=None, isolate=False)
    after = _manifest(out)
    assert after["source"]["weights_sha256"] != before["source"]["weights_sha256"]
    (rec,) = after["variants"]
    assert not rec.get("reused") and rec["sha256"] != before["variants"][0]["sha256"]


def test_changing_full_integer_activations_redoes_only_the_full_integer_files(exported_copy, tiny_vit, calib_dir,
                                                                              faces_dir):
    """The activation width is part of the full-integer variants' reuse key, and of nothing else's."""
    variants = ["tflite-fp16", "tflite-int8", "tflite-int8-io"]
    export_model("tiny-vit", resolve_source(str(tiny_vit)), exported_copy, variants=variants, images_dir=None,
                 calibration_dir=calib_dir, eval_dir=faces_dir, full_integer_activations="int16")
    records = {v["name"]: v for v in _manifest(exported_copy)["variants"]}
    assert records["onnx-fp32"].get("reused") and records["tflite-fp32"].get("reused")
    assert records["tflite-fp16"].get("reused")
    for name in ("tflite-int8", "tflite-int8-io"):
        assert records[name]["status"] == "ok" and not records[name].get("reused")
        assert records[name]["settings"]["activations"] == "int16"
        assert "FULLY_CONNECTED:INT16" in records[name]["settings"]["op_precisions"]
