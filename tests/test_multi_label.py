"""Multi-label classifiers (problem_type = "multi_label_classification"): evaluated from a label CSV
(file,labels), judged per label on thresholded sigmoid decisions and probabilities, handed off and
served with sigmoid scores."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport.validation.dataset import LabelMappingError, scan_eval_set

LABELS = ("smiling", "glasses", "hat")


@pytest.fixture(scope="module")
def multi_label_vit(tmp_path_factory):
    """A 32x32 random ViT whose config says multi_label_classification, with three labels."""
    from edgeport.random_model import make_random_vit

    model = make_random_vit(tmp_path_factory.mktemp("ml") / "attrs", labels=LABELS, seed=3)
    config = json.loads((model / "config.json").read_text())
    config["problem_type"] = "multi_label_classification"
    (model / "config.json").write_text(json.dumps(config))
    return model


def _label_csv(faces_dir, path, rows=None):
    """A label CSV next to the faces: every image with some labels (seeded), or ``rows``."""
    images = sorted(p.relative_to(faces_dir).as_posix() for p in faces_dir.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    rows = rows or [(f, ";".join(n for n in LABELS if rng.random() < 0.5)) for f in images]
    path.write_text("file,labels\n" + "".join(f"{f},{labels}\n" for f, labels in rows))
    return path


def test_a_multi_label_model_is_validated_per_label_and_served_with_sigmoid(multi_label_vit, faces_dir, tmp_path):
    import edgeport
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model
    from edgeport.runtimes import runner_class
    from edgeport.validation.dataset import load_eval_arrays
    from edgeport.validation.preprocess import Preprocessing

    import shutil

    faces = tmp_path / "faces"  # the CSV sits beside the images it names
    shutil.copytree(faces_dir, faces)
    labels_csv = _label_csv(faces, faces / "labels.csv")
    out = tmp_path / "out"
    result = export_model("attrs", resolve_source(str(multi_label_vit)), out,
                          variants=["onnx-fp32", "tflite-fp32"], images_dir=None, progress=False, isolate=False)
    assert result.failed == []
    report = edgeport.validate(out, eval=labels_csv, progress=False)
    eval_set = scan_eval_set(labels_csv, list(LABELS))
    pre = Preprocessing.from_file(out / "preprocessor_config.json")
    inputs, targets, _ = load_eval_arrays(eval_set, pre, progress=False)
    data = json.loads((out / "report.json").read_text())
    assert data["eval_set"]["multi_label"] is True and data["eval_set"]["images"] == 8
    # the reference's accuracy: the share of (image, label) decisions (sigmoid > 0.5) that match the CSV
    with runner_class("torch")(str(multi_label_vit)) as torch_runner:
        logits = torch_runner.infer(inputs)
    expected = np.mean((1 / (1 + np.exp(-logits)) > 0.5) == targets.astype(bool))
    assert data["reference"]["accuracy"] == pytest.approx(expected)
    rows = {v["name"]: v for v in report.variants}
    for name in ("onnx-fp32", "tflite-fp32"):
        assert rows[name]["status"] == "passed", rows[name]["failures"]
        assert set(rows[name]["per_label"]) == set(LABELS)
        assert all(r["agreement"] == 1.0 and r["max_abs_diff"] < 1e-4 for r in rows[name]["per_label"].values())
        assert rows[name]["max_abs_diff"] <= rows[name]["logit_max_abs_diff"]  # probabilities move less
    model = json.loads((out / "mobile" / "model.json").read_text())
    assert model["output"]["multi_label"] is True and model["output"]["to_probabilities"].startswith("sigmoid")
    assert "A multi-label model: the sigmoid of each logit" in (out / "mobile" / "README.md").read_text()
    # edgeport.load answers as the Hugging Face pipeline does for such a model: a sigmoid per label
    face = sorted(faces_dir.rglob("*.jpg"))[0]
    with edgeport.load(out) as classifier:
        answer = classifier(face)
        chosen = classifier.variant
    assert {a["label"] for a in answer} == set(LABELS)
    path = {"onnx-fp32": "model.onnx", "tflite-fp32": "model_fp32.tflite"}[chosen]
    runtime = {"onnx-fp32": "onnxruntime", "tflite-fp32": "tflite"}[chosen]
    from edgeport.validation.dataset import open_image

    with runner_class(runtime)(out / path) as runner:
        one = runner.infer(pre(open_image(face))[None])[0].astype(np.float64)
    got = {a["label"]: a["score"] for a in answer}
    np.testing.assert_allclose([got[n] for n in LABELS], 1 / (1 + np.exp(-one)), atol=1e-5)


def test_a_label_csv_names_unknown_labels_and_missing_files(faces_dir, tmp_path):
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    face = sorted(faces_dir.rglob("*.jpg"))[0]
    (folder / "img" / "a.jpg").write_bytes(face.read_bytes())
    csv = folder / "labels.csv"
    csv.write_text("file,labels\nimg/a.jpg,Smiling;beard\n")
    with pytest.raises(LabelMappingError, match=r"labels.csv: label name\(s\) 'beard' match none of the model's"):
        scan_eval_set(csv, list(LABELS))
    assert scan_eval_set(csv, list(LABELS), {"beard": "ignore"}).samples[0].targets == (0,)  # case-insensitive
    csv.write_text("file,labels\nimg/a.jpg,hat\nimg/gone.jpg,hat\nimg/a.jpg,\n")
    eval_set = scan_eval_set(csv, list(LABELS))
    assert [s.targets for s in eval_set.samples] == [(2,), ()]
    assert [(s.path, s.reason.split(" (")[0]) for s in eval_set.skipped] == [("img/gone.jpg", "not found")]
    csv.write_text("path,label\nimg/a.jpg,hat\n")
    with pytest.raises(LabelMappingError, match="needs the columns file and labels"):
        scan_eval_set(csv, list(LABELS))


def test_a_label_csv_is_for_multi_label_models(validated_tiny, faces_dir, tmp_path):
    import shutil

    from edgeport.config import RunSettings
    from edgeport.pipeline import validate_export

    out = tmp_path / "tiny"
    shutil.copytree(validated_tiny, out)
    faces = tmp_path / "faces"
    shutil.copytree(faces_dir, faces)
    csv = _label_csv(faces, faces / "labels.csv",
                     rows=[(p.relative_to(faces).as_posix(), p.parent.name) for p in sorted(faces.rglob("*.jpg"))])
    with pytest.raises(ValueError, match="a label CSV, which is for multi-label models"):
        validate_export(out, csv, {}, RunSettings(), progress=False)


def test_every_label_is_held_to_the_agreement_budget():
    """A rare label whose decisions flip fails the budget, though the mean agreement would pass."""
    from edgeport.validation.budgets import Budget
    from edgeport.validation.metrics import compare

    reference = np.full((100, 3), -4.0)
    reference[:, 0] = 4.0  # label 0 applies to every image
    reference[:5, 2] = 4.0  # label 2 to five of them
    variant = reference.copy()
    variant[:5, 2] = -4.0  # ... which the variant drops
    metrics = compare(variant, reference, (reference > 0).astype(np.int64), list(LABELS))
    assert metrics["agreement"] == pytest.approx(295 / 300) and metrics["per_label"]["hat"]["agreement"] == 0.95
    failures = Budget(min_agreement=0.97).check(metrics, None)
    assert [(f.metric, f.detail.split(":")[0]) for f in failures] == [("label_agreement", "on label 'hat'")]
    assert metrics["accuracy"] == pytest.approx(295 / 300)  # against the targets the reference gives


def test_the_precision_search_judges_a_multi_label_file_on_every_label():
    """A label that flips on some images leaves the top-1 class alone: the search must see it."""
    from edgeport.converters.precision_search import Holdout, Target

    reference = np.tile([2.0, -2.0, 3.0], (10, 1))
    moved = reference.copy()
    moved[:2, 1] = 1.0  # "glasses" now applies to two images; the top-1 label is still "hat"
    images = np.zeros((10, 1), np.float32)
    assert Holdout(images, reference).judge(moved, Target(0.5, None))["agreement"] == 1.0
    multi = Holdout(images, reference, multi_label=True)
    assert multi.judge(moved, Target(0.5, None))["agreement"] == 0.8
    assert multi.judge_stream(iter([moved[:5], moved[5:]]), Target(0.99, None))["passed"] is False


@pytest.mark.parametrize("eval_kind", ["label-csv", "class-folders"])
def test_a_multi_label_teacher_is_distilled_and_compared_per_label(eval_kind, multi_label_vit, faces_dir, calib_dir,
                                                                    tmp_path):
    """edgeport distill of a multi-label teacher: soft sigmoid targets, a multi-label student, and
    the comparison on a label CSV or on class folders (each image then has its folder's label)."""
    import shutil

    from edgeport.distillation.run import TrainSettings, distill_model
    from edgeport.model_source import resolve_source

    if eval_kind == "label-csv":
        faces = tmp_path / "faces"
        shutil.copytree(faces_dir, faces)
        evaluation = _label_csv(faces, faces / "labels.csv")
    else:
        evaluation = tmp_path / "folders"
        for i, path in enumerate(sorted(faces_dir.rglob("*.jpg"))):
            (evaluation / LABELS[i % len(LABELS)]).mkdir(parents=True, exist_ok=True)
            (evaluation / LABELS[i % len(LABELS)] / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "student"
    result = distill_model(resolve_source(str(multi_label_vit)), "attrs", calib_dir, out, student="mobilenet_v2-0.35",
                           eval_dir=evaluation, settings=TrainSettings(max_steps=4, eval_every=2, batch_size=8),
                           cache_dir=tmp_path / "cache", latency_variants=(), progress=False)
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"
    ev = result.report["evaluation"]
    assert ev["images"] == 8 and 0 <= ev["student_accuracy"] <= 1 and 0 <= ev["agreement"] <= 1
    assert "no labels: the teacher is multi-label" in result.report["images"]["labels"]
