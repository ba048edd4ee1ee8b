"""Drift localization names the node where a deliberately broken ONNX variant diverges."""
from __future__ import annotations

import json

import onnx
from onnx import numpy_helper

from edgeport.cli import main
from edgeport.pipeline import artifact_sha256


def _break_second_layer(src, dst) -> str:
    """Scale one weight of the second encoder layer by 5; return the node that uses it."""
    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and any(x in inits for x in n.input)]
    node = next(n for n in matmuls if "layer.1" in n.name)
    weight = inits[next(x for x in node.input if x in inits)]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 5.0, weight.name))
    onnx.save(model, str(dst))
    return node.name


def test_broken_onnx_variant_is_localized(exported_copy, faces_dir, tmp_path):
    broken_node = _break_second_layer(exported_copy / "model.onnx", exported_copy / "model_int8_dynamic.onnx")
    manifest = json.loads((exported_copy / "manifest.json").read_text())
    for v in manifest["variants"]:
        if v["name"] == "onnx-int8-dynamic":  # the "export" produced this file
            v["sha256"] = artifact_sha256(exported_copy / v["path"])
    (exported_copy / "manifest.json").write_text(json.dumps(manifest))
    cfg = tmp_path / "c.toml"
    cfg.write_text("[budgets.int8]\nmax_abs_diff = 1e-3\n[budgets.fp16]\nmin_agreement = 0.0\n")
    code = main(["validate", str(exported_copy), "--eval", str(faces_dir), "--no-progress", "--config", str(cfg),
                 "--latency-runs", "2"])
    assert code == 1
    report = json.loads((exported_copy / "report.json").read_text())
    by_name = {v["name"]: v for v in report["variants"]}
    loc = by_name["onnx-int8-dynamic"]["localization"]
    assert loc["first_divergent"]["node"] == broken_node
    assert loc["first_divergent"]["op_type"] == "MatMul" and loc["first_divergent"]["relative_error"] > 1.0
    # every tensor before the broken node matches; the per-layer metrics are all in the JSON
    rows = loc["layers"]
    idx = next(i for i, r in enumerate(rows) if r["node"] == broken_node)
    assert idx > 10 and all(r["relative_error"] < 1e-5 for r in rows[:idx])
    assert by_name["onnx-fp32"]["localization"] is None
    assert f"first diverges at node `{broken_node}`" in (exported_copy / "report.md").read_text()
