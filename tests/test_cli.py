"""The CLI end to end on a small exported ViT: reports, gating, failures kept in the report."""
from __future__ import annotations

import json

import pytest

from edgeport.cli import main
from edgeport.model_source import resolve_source
from edgeport.pipeline import export_model

REPORT_KEYS = {"model", "source", "labels", "eval_set", "passed", "variants"}
VARIANT_KEYS = {"name", "runtime", "path", "size_bytes", "accuracy", "agreement", "max_abs_diff",
                "mean_abs_diff", "cosine", "latency_ms", "passed", "failures"}


def _config(tmp_path, budgets: str) -> str:
    path = tmp_path / "edgeport.toml"
    # fp32 budgets only: a random-weight ViT's logits are too close together for int8 agreement
    path.write_text("[settings]\nlatency_runs = 3\nwarmup = 1\n[budgets.int8]\nmin_agreement = 0\n"
                    "[budgets.fp16]\nmin_agreement = 0\nmax_accuracy_drop = 100\n\n" + budgets)
    return str(path)


def test_validate_passes_and_writes_reports(exported_copy, faces_dir, tmp_path, capsys):
    code = main(["validate", str(exported_copy), "--eval", str(faces_dir), "--no-progress",
                 "--config", _config(tmp_path, "")])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((exported_copy / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["passed"] is True
    assert report["labels"] == ["female", "male"]
    assert report["eval_set"]["images"] == 8 and report["eval_set"]["skipped"] == 0
    assert report["source"]["random_weights"] is True
    from conftest import ALL_VARIANTS

    names = [v["name"] for v in report["variants"]]
    assert names == ALL_VARIANTS
    for v in report["variants"]:
        assert VARIANT_KEYS <= set(v)
        assert v["latency_ms"]["p50"] > 0 and v["size_bytes"] > 0
        if v["precision"] == "fp32":
            assert v["agreement"] == 1.0 and v["max_abs_diff"] < 1e-4
        assert set(v["per_class_drift_points"]) == {"female", "male"}
    md = (exported_copy / "report.md").read_text()
    assert "PASSED" in md and "| tflite-fp32 |" in md and "random weights" in md


def test_unmeetable_budget_fails_and_names_variant_and_metric(exported_copy, faces_dir, tmp_path, capsys):
    cfg = _config(tmp_path, "[budgets.tflite-fp32]\nmin_cosine = 1.5\n")
    code = main(["validate", str(exported_copy), "--eval", str(faces_dir), "--no-progress", "--config", cfg])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL tiny-vit/tflite-fp32: cosine" in out and "budget >= 1.5" in out
    report = json.loads((exported_copy / "report.json").read_text())
    assert report["passed"] is False
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["onnx-fp32"]["passed"] is True
    (failure,) = by_name["tflite-fp32"]["failures"]
    assert failure["metric"] == "cosine" and failure["budget"] == 1.5
    md = (exported_copy / "report.md").read_text()
    assert md.index("**FAIL** | tflite-fp32") < md.index("| onnx-fp32 |")  # failures first


def test_failed_variant_is_recorded_and_others_kept(tiny_vit, faces_dir, tmp_path, monkeypatch, capsys):
    import edgeport.variants as variants

    def broken(ctx, out):
        raise RuntimeError("converter exploded on purpose")

    spec = variants.VARIANTS["tflite-fp32"]
    monkeypatch.setitem(variants.VARIANTS, "tflite-fp32",
                        variants.VariantSpec(spec.name, spec.runtime, spec.precision, spec.filename,
                                             spec.requires, broken, spec.description))
    out_dir = tmp_path / "out"
    result = export_model("tiny", resolve_source(str(tiny_vit)), out_dir,
                          variants=["onnx-fp32", "tflite-fp32"], images_dir=faces_dir, isolate=False)
    assert result.failed == ["tflite-fp32"]
    assert (out_dir / "model.onnx").exists() and not (out_dir / "model_fp32.tflite").exists()
    assert not list(out_dir.glob(".tmp-*"))
    code = main(["validate", str(out_dir), "--eval", str(faces_dir), "--no-progress",
                 "--config", _config(tmp_path, "")])
    assert code == 1
    report = json.loads((out_dir / "report.json").read_text())
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["onnx-fp32"]["passed"] is True
    assert by_name["tflite-fp32"]["passed"] is False
    assert "converter exploded on purpose" in by_name["tflite-fp32"]["error"]


def test_label_mapping_error_exits_2(exported_copy, tmp_path, capsys):
    (tmp_path / "ev" / "Female").mkdir(parents=True)
    (tmp_path / "ev" / "robots").mkdir()
    code = main(["validate", str(exported_copy), "--eval", str(tmp_path / "ev"), "--no-progress",
                 "--config", _config(tmp_path, "")])
    assert code == 2
    err = capsys.readouterr().err
    assert "'robots'" in err and "female, male" in err


@pytest.mark.parametrize("argv", [["--help"], ["export", "--help"], ["validate", "--help"], ["export-all", "--help"]])
def test_help_explains(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "usage: edgeport" in capsys.readouterr().out


def test_validate_without_export_says_what_to_do(tmp_path, faces_dir, capsys):
    assert main(["validate", str(tmp_path), "--eval", str(faces_dir), "--config", _config(tmp_path, "")]) == 2
    assert "run `edgeport export`" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["export", "m"], ["validate", "d", "--eval", "e"], ["export-all"], ["bench"]])
def test_every_subcommand_that_draws_progress_takes_no_progress(command):
    from edgeport.cli import build_parser

    assert build_parser().parse_args([*command, "--no-progress"]).no_progress is True


def test_no_progress_silences_heartbeats_down_to_grandchildren(monkeypatch, capsys):
    from edgeport.converters.child_process import NO_PROGRESS_ENV, measure_command

    cmd = ["sleep", "0.5"]
    measure_command(cmd, label="step", heartbeat_s=0.1)
    assert "step: still running" in capsys.readouterr().out
    measure_command(cmd, label="step", heartbeat_s=None)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv(NO_PROGRESS_ENV, "1")  # what run_stage(progress=False) hands its child
    measure_command(cmd, label="step", heartbeat_s=0.1)
    assert capsys.readouterr().out == ""


def test_export_into_a_relative_out_folder(tiny_vit, calib_dir, tmp_path, monkeypatch):
    """`--out artifacts/x` from the working folder: the steps that run in scratch folders still find it."""
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    monkeypatch.chdir(tmp_path)
    code = main(["export", str(tiny_vit), "--out", "rel/tiny", "--variants", "onnx-int8-static,tflite-fp32",
                 "--calibration", str(calib_dir), "--config", str(cfg), "--no-progress"])
    manifest = json.loads((tmp_path / "rel" / "tiny" / "manifest.json").read_text())
    assert code == 0, [(v["name"], v["error"]) for v in manifest["variants"]]
