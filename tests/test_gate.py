"""`edgeport gate`: budgets, unreadable images, and regressions against a baseline report."""
from __future__ import annotations

import copy
import json

from edgeport.cli import main
from edgeport.validation.gate import GateSettings, gate


def _report(**accuracies) -> dict:
    variants = [{"name": n, "accuracy": a, "agreement": 1.0, "failures": [], "passed": True, "error": None}
                for n, a in accuracies.items()]
    return {"model": "m", "variants": variants, "eval_set": {"images": 100, "skipped": 0}}


def test_regression_beyond_margin_fails_and_within_passes():
    base = _report(**{"onnx-fp32": 0.80, "tflite-int8": 0.80})
    now = _report(**{"onnx-fp32": 0.797, "tflite-int8": 0.79})
    reasons = gate(now, base, GateSettings(max_accuracy_regression=0.5))
    assert reasons == ["REGRESSION m/tflite-int8: accuracy 80.00% -> 79.00% (-1.00 points; allowed -0.50)"]
    assert gate(now, base, GateSettings(max_accuracy_regression=1.5)) == []


def test_missing_or_broken_variant_is_a_regression():
    base = _report(**{"onnx-fp32": 0.8, "tflite-fp16": 0.8})
    now = _report(**{"onnx-fp32": 0.8})
    assert gate(now, base) == ["REGRESSION m/tflite-fp16: in the baseline, missing from this report"]
    broken = _report(**{"onnx-fp32": 0.8, "tflite-fp16": None})
    broken["variants"][1]["agreement"] = None
    assert any("tflite-fp16: accuracy 80.00% in the baseline, none now" in r for r in gate(broken, base))


def test_too_many_skipped_images_fail():
    report = _report(**{"onnx-fp32": 0.8})
    report["eval_set"] = {"images": 95, "skipped": 5}
    (reason,) = gate(report, None, GateSettings(max_skipped_fraction=0.02))
    assert "5 of 100 evaluation images could not be read (5.0%, allowed 2.0%)" in reason
    assert gate(report, None, GateSettings(max_skipped_fraction=0.10)) == []


def test_gate_cli_on_real_reports(validated_tiny, tmp_path, capsys):
    exported_copy = validated_tiny
    cfg = tmp_path / "c.toml"
    cfg.write_text("[gate]\nmax_accuracy_regression = 0.5\n")
    report = json.loads((exported_copy / "report.json").read_text())
    assert main(["gate", str(exported_copy), "--config", str(cfg)]) == 0
    assert main(["gate", "--config", str(cfg)]) == 2  # its default: configured models, none here
    better = copy.deepcopy(report)  # a baseline in which tflite-int8 was one image (12.5 points) better
    for v in better["variants"]:
        if v["name"] == "tflite-int8":
            v["accuracy"] += 0.125
    (tmp_path / "old.json").write_text(json.dumps(better))
    capsys.readouterr()
    assert main(["gate", str(exported_copy / "report.json"), "--baseline", str(tmp_path / "old.json"),
                 "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION tiny-vit/tflite-int8: accuracy" in out and "-12.50 points; allowed -0.50" in out
    assert main(["gate", str(tmp_path / "missing.json"), "--config", str(cfg)]) == 2
