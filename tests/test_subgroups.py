"""Subgroups of an evaluation set: from file names or a manifest, their figures, their budget."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.config import ConfigError, load_config
from edgeport.validation.budgets import Budget
from edgeport.validation.gate import gate
from edgeport.validation.harness import VariantResult
from edgeport.validation.report import build_report, render_markdown
from edgeport.validation.report_html import render_html
from edgeport.validation.subgroups import (SubgroupError, SubgroupSpec, assign, bin_labels, reference_rows, subgroup_rows,
                                  paired_drift_interval, wilson_interval)

UTK = r"^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_"
RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "other"}


def _paths(root: Path, names: list[str]) -> list[Path]:
    return [root / "female" / n for n in names]


def test_a_file_name_pattern_with_a_value_map_and_bins(tmp_path):
    spec = SubgroupSpec(pattern=UTK, values={"race": RACES}, bins={"age": [0, 10, 20, 40, 60]},
                        attributes=["race", "age"])
    names = ["5_1_0_2017.jpg", "15_1_1_2017.jpg", "39_1_1_2017.jpg", "85_1_4_2017.jpg",
             "holiday.jpg",  # matches nothing
             "30_1_7_2017.jpg"]  # race code outside the map
    a = assign(spec, _paths(tmp_path, names), tmp_path)
    assert a.values["age"] == ["0-9", "10-19", "20-39", "60+", None, "20-39"]
    assert a.values["race"] == ["white", "black", "black", "other", None, None]
    assert a.order["race"] == ["white", "black", "other"]  # the map's order, present values only
    assert a.order["age"] == ["0-9", "10-19", "20-39", "60+"]
    assert dict(a.uncovered["race"]) == {"female/holiday.jpg": "file name does not match the pattern",
                                         "female/30_1_7_2017.jpg": "race value '7' is not in the value map "
                                                                   "(0, 1, 2, 3, 4)"}
    assert [p for p, _ in a.uncovered["age"]] == ["female/holiday.jpg"]
    assert bin_labels([0, 10, 20, 40, 60]) == ["0-9", "10-19", "20-39", "40-59", "60+"]
    assert bin_labels([0, 0.5]) == ["[0, 0.5)", "0.5+"]


def test_csv_and_json_manifests_and_an_image_outside_them(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("file,skin,site\nfemale/a.jpg,dark,x\nb.jpg,light,\n")
    paths = _paths(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    a = assign(SubgroupSpec(manifest=csv), paths, tmp_path)
    assert a.attributes == ["site", "skin"]
    assert a.values["skin"] == ["dark", "light", None]  # b.jpg found by its bare file name
    assert dict(a.uncovered["skin"]) == {"female/c.jpg": "not in meta.csv"}
    assert dict(a.uncovered["site"]) == {"female/b.jpg": "no site in meta.csv", "female/c.jpg": "not in meta.csv"}
    js = tmp_path / "meta.json"
    js.write_text(json.dumps({"female/a.jpg": {"skin": "dark"}, "female/c.jpg": {"skin": "light"}}))
    assert assign(SubgroupSpec(manifest=js), paths, tmp_path).values["skin"] == ["dark", None, "light"]
    js.write_text(json.dumps([{"file": "a.jpg", "skin": "dark"}]))
    assert assign(SubgroupSpec(manifest=js), paths, tmp_path).values["skin"] == ["dark", None, None]


def test_bad_settings_fail_with_the_fix(tmp_path):
    with pytest.raises(SubgroupError, match="no named group"):
        SubgroupSpec(pattern=r"^\d+_").check("cfg")
    with pytest.raises(SubgroupError, match="not a valid regular expression"):
        SubgroupSpec(pattern="(?P<age>").check("cfg")
    with pytest.raises(SubgroupError, match="ascending lower edges"):
        SubgroupSpec(pattern=UTK, bins={"age": [10, 5]}).check("cfg")
    with pytest.raises(SubgroupError, match=r"\['skin'\] are not named by the pattern"):
        assign(SubgroupSpec(pattern=UTK, attributes=["skin"]), _paths(tmp_path, ["1_1_0_x.jpg"]), tmp_path)
    with pytest.raises(SubgroupError, match="manifest not found"):
        assign(SubgroupSpec(manifest=tmp_path / "none.csv"), [], tmp_path)
    cfg = tmp_path / "e.toml"
    cfg.write_text('[[models]]\nname = "m"\nsource = "x"\n[models.subgroups]\npattern = "^(?P<a>x)"\ncolour = 1\n')
    with pytest.raises(ConfigError, match=r"subgroups: unknown key\(s\) \['colour'\]"):
        load_config(cfg)


def _logits(pred: list[int]) -> np.ndarray:
    return np.eye(2, dtype=np.float32)[pred]


def test_figures_per_subgroup_and_a_group_below_the_minimum_size(tmp_path):
    names = [f"{age}_1_{race}_x.jpg" for age, race in [(5, 0)] * 6 + [(30, 1)] * 4]
    a = assign(SubgroupSpec(pattern=UTK, values={"race": RACES}, attributes=["race"], min_size=5),
               _paths(tmp_path, names), tmp_path)
    labels = np.zeros(10, dtype=int)
    reference = _logits([0] * 10)  # right on every image
    variant = _logits([0] * 6 + [1, 1, 0, 0])  # wrong on two of the 4 black-labelled images
    white, black = subgroup_rows(variant, reference, labels, a)
    assert (white["value"], white["images"], white["drift_points"], white["judged"]) == ("white", 6, 0.0, True)
    assert (black["images"], black["accuracy"], black["drift_points"], black["agreement"]) == (4, 0.5, -50.0, 0.5)
    assert black["judged"] is False  # 4 < min_size 5: reported, not judged
    lo, hi = black["accuracy_ci"]
    assert (lo, hi) == pytest.approx(wilson_interval(2, 4)) and lo < 0.5 < hi
    assert black["drift_ci"][0] < -50 < black["drift_ci"][1]
    # no image changed on white: the interval still has a width (6 images cannot prove 0 drift)
    assert white["drift_ci"][0] < -5 and white["drift_ci"][1] > 5
    assert paired_drift_interval(0, 0, 400) == pytest.approx([-0.4876, 0.4876], abs=1e-3)
    budget = Budget(max_subgroup_drop=3.0)
    assert budget.check_subgroups([white, black]) == []  # the only loss is in a group too small to judge


def test_the_gate_fails_a_variant_that_passes_overall_but_not_on_one_group(tmp_path):
    """A variant degraded on one subgroup only: within its overall budget, over its subgroup budget."""
    names = [f"{age}_1_0_x.jpg" for age in [30] * 180 + [5] * 20]
    a = assign(SubgroupSpec(pattern=UTK, bins={"age": [0, 10, 20]}, attributes=["age"], min_size=20),
               _paths(tmp_path, names), tmp_path)
    labels = np.zeros(200, dtype=int)
    reference = _logits([0] * 200)
    degraded = _logits([0] * 180 + [1] + [0] * 19)  # one child of 20 misclassified: 0.5 points overall
    budget = Budget(min_agreement=0.99, max_accuracy_drop=1.0, max_subgroup_drop=3.0)
    from edgeport.validation import metrics

    ref = VariantResult("reference", "torch", "ref", "fp32")
    ref.metrics = metrics.compare(reference, reference, labels, ["female", "male"])
    ref.subgroups = reference_rows(reference, labels, a)
    bad = VariantResult("onnx-int8-static", "onnxruntime", "m.onnx", "int8", budget=budget.to_dict())
    bad.metrics = metrics.compare(degraded, reference, labels, ["female", "male"])
    bad.metrics.update(metrics.drift(bad.metrics, ref.metrics))
    bad.failures = budget.check(bad.metrics, ref.metrics["accuracy"])
    assert bad.failures == []  # overall: 99.5% agreement, 0.5 points
    bad.subgroups = subgroup_rows(degraded, reference, labels, a)
    bad.failures += budget.check_subgroups(bad.subgroups)
    report = build_report(model="m", source={"path": "m"}, labels=["female", "male"],
                          eval_set={"path": "e", "images": 200, "skipped": 0}, reference=ref, variants=[bad],
                          settings={}, edgeport_version="t")
    report["subgroups"] = a.summary(SubgroupSpec(pattern=UTK))
    (line,) = gate(report)
    assert line.startswith("FAIL m/onnx-int8-static: subgroup_accuracy_drop_points 5 (budget <= 3) "
                           "on age=0-9 (20 images): accuracy 95.00% against the reference's 100.00%")
    md = render_markdown(report)
    assert "| onnx-int8-static | age=0-9 | 20 | 95.00% | 100.00% | -5.00" in md and "**over**" in md
    page = render_html(report)
    assert "id='subgroup-heatmap'" in page and "<td>age=0-9</td><td>20</td>" in page


def _degrade_one_image(fp32: Path, out: Path, image: np.ndarray, others: np.ndarray) -> None:
    """``fp32`` with its two logits swapped on ``image`` alone (recognised by its mean pixel)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    x, y = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.output[:] = ["orig_logits" if o == y else o for o in node.output]
    target = float(image.mean())
    gap = float(np.min(np.abs(others.reshape(len(others), -1).mean(axis=1) - target)))
    graph.initializer.extend([
        numpy_helper.from_array(np.array([1], np.int64), "deg_axes"),
        numpy_helper.from_array(np.array([target], np.float32), "deg_mean"),
        numpy_helper.from_array(np.array([gap / 2], np.float32), "deg_eps"),
        numpy_helper.from_array(np.array([1, 0], np.int64), "deg_swap")])
    graph.node.extend([
        helper.make_node("Flatten", [x], ["deg_flat"]),
        helper.make_node("ReduceMean", ["deg_flat", "deg_axes"], ["deg_m"], keepdims=1),
        helper.make_node("Sub", ["deg_m", "deg_mean"], ["deg_d"]),
        helper.make_node("Abs", ["deg_d"], ["deg_a"]),
        helper.make_node("Less", ["deg_a", "deg_eps"], ["deg_hit"]),
        helper.make_node("Gather", ["orig_logits", "deg_swap"], ["deg_swapped"], axis=1),
        helper.make_node("Where", ["deg_hit", "deg_swapped", "orig_logits"], [y])])
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def test_validate_fails_a_real_variant_degraded_on_one_group(exported_copy, faces_dir, tmp_path):
    """End to end: a runtime's output, a CSV manifest with one image left out, the report and the gate."""
    from edgeport.converters.onnx_int8_static import run_onnx
    from edgeport.cli import main
    from edgeport.pipeline import artifact_sha256, list_images
    from edgeport.validation.preprocess import Preprocessing

    manifest = json.loads((exported_copy / "manifest.json").read_text())
    manifest["variants"] = [v for v in manifest["variants"] if v["name"] in ("onnx-fp32", "onnx-int8-dynamic", "tflite-fp32")]
    paths = list_images(faces_dir)
    pre = Preprocessing.from_file(exported_copy / "preprocessor_config.json")
    from edgeport.validation.dataset import open_image

    images = np.stack([pre(open_image(p)) for p in paths])
    labels = np.array([0 if p.parent.name == "female" else 1 for p in paths])
    right = run_onnx(exported_copy / "model.onnx", images).argmax(-1) == labels
    victim = int(np.flatnonzero(right)[0])  # an image the reference gets right, made wrong
    rest = [i for i in range(len(paths)) if i != victim]
    group_a, group_b, left_out = [victim] + rest[:2], rest[2:6], rest[6]
    record = next(v for v in manifest["variants"] if v["name"] == "onnx-int8-dynamic")
    degraded = exported_copy / record["path"]
    _degrade_one_image(exported_copy / "model.onnx", degraded, images[victim], images[rest])
    record["sha256"] = artifact_sha256(degraded)
    (exported_copy / "manifest.json").write_text(json.dumps(manifest))
    csv = tmp_path / "groups.csv"
    csv.write_text("path,site\n" + "".join(f"{paths[i].parent.name}/{paths[i].name},{g}\n"
                                           for g, members in (("a", group_a), ("b", group_b)) for i in members))
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[budgets.int8]\nmin_agreement = 0.8\nmax_accuracy_drop = 20.0\nmax_subgroup_drop = 10.0\n")
    code = main(["validate", str(exported_copy), "--eval", str(faces_dir), "--no-progress", "--config", str(cfg),
                 "--latency-runs", "2", "--subgroup-manifest", str(csv), "--min-subgroup-size", "3"])
    assert code == 1
    report = json.loads((exported_copy / "report.json").read_text())
    bad = next(v for v in report["variants"] if v["name"] == "onnx-int8-dynamic")
    assert bad["agreement"] == 7 / 8 and [f["metric"] for f in bad["failures"]] == ["subgroup_accuracy_drop_points"]
    rows = {r["value"]: r for r in bad["subgroups"]}
    assert rows["a"]["drift_points"] == pytest.approx(-100 / 3) and rows["b"]["drift_points"] == 0
    assert report["subgroups"]["uncovered"]["site"]["files"] == [
        {"path": f"{paths[left_out].parent.name}/{paths[left_out].name}", "reason": "not in groups.csv"}]
    assert report["subgroups"]["attributes"] == {"site": {"a": 3, "b": 4}}
    assert "site=a (3 images): accuracy" in bad["failures"][0]["message"]
    model_json = json.loads((exported_copy / "mobile" / "model.json").read_text())
    assert [r["value"] for r in model_json["evaluation"]["subgroups"]] == ["a", "b"]
    assert main(["gate", str(exported_copy / "report.json")]) == 1
    card = (exported_copy / "mobile" / "README.md").read_text()
    assert "## Accuracy per subgroup" in card and "| site=a | 3 |" in card
    fp32 = next(f for f in model_json["files"] if f["file"] == "model_fp32.tflite")
    assert fp32["worst_subgroup"] is None  # loses nowhere: no "worst" subgroup at +0.00 is named
    assert "`model_fp32.tflite` none below the reference" in card


def test_the_bundled_gender_subset_is_covered_by_the_configured_pattern():
    from edgeport.config import load_config
    from edgeport.pipeline import list_images

    entry = load_config().model("gender-vit")
    a = assign(entry.subgroups, list_images(entry.eval_dir), entry.eval_dir)
    summary = a.summary(entry.subgroups)
    assert summary["uncovered"] == {}  # every committed image keeps its UTKFace name
    assert summary["attributes"]["race"] == {r: 80 for r in RACES.values()}
    assert list(summary["attributes"]["age"]) == ["0-9", "10-19", "20-39", "40-59", "60+"]
