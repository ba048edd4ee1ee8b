"""edgeport distill: a tiny teacher and student on a few dozen real faces, through distill ->
export -> validate; the teacher-output cache; resume after a kill; each bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

FAST = dict(max_steps=24, eval_every=8, batch_size=16)
PATTERN = r"^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """40 UTKFace crops of the committed calibration subset, 20 per class, in class folders."""
    root = tmp_path_factory.mktemp("distill-images")
    for label in ("female", "male"):
        (root / label).mkdir()
        for path in sorted((REPO / "data" / "calib" / "gender" / label).iterdir())[:20]:
            shutil.copyfile(path, root / label / path.name)
    return root


def _distill(teacher: Path, images: Path, out: Path, cache: Path, **kwargs):
    from edgeport.distillation.run import TrainSettings, distill_model
    from edgeport.model_source import resolve_source
    from edgeport.validation.subgroups import SubgroupSpec

    settings = TrainSettings(**{**FAST, **kwargs.pop("settings", {})})
    return distill_model(resolve_source(str(teacher)), "tiny-vit", images, out, settings=settings, cache_dir=cache,
                         progress=False, **{"student": "mobilenet_v2-0.35", "latency_variants": (), **kwargs},
                         subgroups=SubgroupSpec(pattern=PATTERN, attributes=["race"]))


def test_distill_export_validate(tiny_vit, images, faces_dir, tmp_path):
    """The student is an ordinary model folder with the teacher's labels; the report compares the
    two on the evaluation set (per subgroup too) and times both; export and validate take the student."""
    from edgeport.distillation.students import parameters
    from edgeport.model_source import read_labels, resolve_source
    from edgeport.pipeline import export_model, validate_export
    from edgeport.validation.budgets import Budget

    out = tmp_path / "student"
    result = _distill(tiny_vit, images, out, tmp_path / "cache", eval_dir=faces_dir, latency_variants=("onnx-fp32",),
                      budget=Budget(max_accuracy_drop=100.0))
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "distill.json", "distill.md"} <= \
        {p.name for p in out.iterdir()}
    assert read_labels(out / "config.json") == read_labels(tiny_vit / "config.json")
    report = json.loads((out / "distill.json").read_text())
    assert report == result.report and report["judged"] and report["passed"] == (not report["failures"])
    ev = report["evaluation"]
    assert ev["images"] == 8 and 0 <= ev["student_accuracy"] <= 1 and 0 <= ev["agreement"] <= 1
    assert {r["attribute"] for r in ev["subgroups"]["rows"]} == {"race"}
    assert sum(r["images"] for r in ev["subgroups"]["rows"]) <= 8
    assert report["training"]["steps"] == FAST["max_steps"] and report["training"]["holdout_images"] == 0
    assert report["images"]["used"] == 40 and "labels from the folder names" in report["images"]["labels"]
    (row,) = report["latency"]
    assert row["variant"] == "onnx-fp32" and row["teacher_ms"] > 0 and row["student_ms"] > 0
    assert report["teacher_outputs"] == {"computed": 40, "cached": 0, "seconds": report["teacher_outputs"]["seconds"]}
    assert "| parameters |" in (out / "distill.md").read_text()
    assert not list(tmp_path.glob(".student*"))  # the work folder is gone

    from transformers import AutoModelForImageClassification

    assert parameters(AutoModelForImageClassification.from_pretrained(str(out))) == report["student"]["parameters"]
    exported = export_model("student", resolve_source(str(out)), tmp_path / "export", variants=["onnx-fp32"],
                            images_dir=None, calibration_dir=None, eval_dir=faces_dir, progress=False, isolate=False)
    assert exported.failed == []
    from edgeport.config import DEFAULT_BUDGETS
    from edgeport.validation.harness import RunSettings

    validated = validate_export(tmp_path / "export", faces_dir, DEFAULT_BUDGETS, RunSettings(runs=3), progress=False)
    assert [v["passed"] for v in validated["variants"]] == [True]

    again = _distill(tiny_vit, images, out, tmp_path / "cache", eval_dir=faces_dir, latency_variants=("onnx-fp32",),
                     budget=Budget(max_accuracy_drop=100.0))
    assert again.reused and again.report == report
    elsewhere = _distill(tiny_vit, images, out, tmp_path / "cache", eval_dir=images, latency_variants=())
    assert elsewhere.reused and elsewhere.report["training"] == report["training"]  # judged again, not retrained
    assert elsewhere.report["evaluation"]["images"] == 40 and "latency" not in elsewhere.report
    assert json.loads((out / "distill.json").read_text())["evaluation"]["images"] == 40


def test_teacher_outputs_are_computed_once_per_image_content(images, tmp_path):
    from edgeport.distillation.images import file_digest
    from edgeport.distillation.teacher_outputs import teacher_logits

    calls = []

    def infer(batch):
        calls.append(len(batch))
        return batch.mean(axis=(2, 3))[:, :2]

    paths = sorted(images.rglob("*.jpg"))[:10]
    digests = [file_digest(p) for p in paths]
    pre = lambda image: np.asarray(image.resize((8, 8)), dtype=np.float32).transpose(2, 0, 1)  # noqa: E731
    first, computed = teacher_logits(paths, digests, "k", tmp_path, pre, infer, batch=4, progress=False,
                                     log=lambda m: None)
    assert sum(calls) == 10 and computed == 10
    again, computed = teacher_logits(paths, digests, "k", tmp_path, pre, infer, batch=4, progress=False,
                                     log=lambda m: None)
    assert sum(calls) == 10 and computed == 0 and np.array_equal(first, again)
    copy = tmp_path / "copy.jpg"  # the same bytes under another name: from the cache
    shutil.copyfile(paths[0], copy)
    extra = sorted(images.rglob("*.jpg"))[10]
    more, computed = teacher_logits([copy, extra], [file_digest(copy), file_digest(extra)], "k", tmp_path, pre,
                                    infer, progress=False, log=lambda m: None)
    assert sum(calls) == 11 and computed == 1 and np.array_equal(more[0], first[0])
    other, _ = teacher_logits(paths[:2], digests[:2], "other-teacher", tmp_path, pre, infer, progress=False,
                              log=lambda m: None)
    assert sum(calls) == 13 and other.shape == (2, 2)


RESUMABLE = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_distill import _distill
_distill(Path({teacher!r}), Path({images!r}), Path({out!r}), Path({cache!r}),
         settings=dict(max_steps={steps}, eval_every=4, minutes=30, patience=1000))
"""
# Steps of the resumable run: the kill comes at the first checkpoint (step 4), well before the end;
# 120 steps made this test 35-50 s under two test workers (three trainings on one thread)
RESUMABLE_STEPS = 60


def test_a_killed_distillation_resumes_from_its_checkpoint(tiny_vit, images, tmp_path):
    """Killed (SIGKILL) after a checkpoint, the rerun starts from it and ends where an
    uninterrupted run ends, weight for weight."""
    import torch
    from safetensors.torch import load_file

    out, cache = tmp_path / "student", tmp_path / "cache"
    script = RESUMABLE.format(tests=str(REPO / "tests"), teacher=str(tiny_vit), images=str(images), out=str(out),
                              cache=str(cache), steps=RESUMABLE_STEPS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    checkpoint = tmp_path / ".student.distill-work" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert checkpoint.exists(), child.stderr.read().decode()[-2000:]
    assert not out.exists()  # nothing half-written where the student goes
    torch.set_num_threads(1)
    settings = dict(max_steps=RESUMABLE_STEPS, eval_every=4, minutes=30, patience=1000)
    resumed = _distill(tiny_vit, images, out, cache, settings=settings)
    first_step = resumed.report["training"]["resumed_from"]
    assert first_step and 0 < first_step < RESUMABLE_STEPS and resumed.report["training"]["steps"] == RESUMABLE_STEPS
    straight = _distill(tiny_vit, images, tmp_path / "straight", cache, settings=settings)
    assert straight.report["training"]["resumed_from"] is None
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("case, message", [
    ("not-a-classifier", "image classifier"),
    ("empty-images", "no image files under"),
    ("unreadable-images", "could be read"),
    ("unknown-student", "unknown student 'mobilenet_v9'"),
    ("impossible-size", "cannot take 16x16 images"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(case, message, tiny_vit, images, tmp_path, capsys,
                                                         monkeypatch):
    from edgeport.cli import main

    teacher, image_dir, extra = tiny_vit, images, []
    if case == "not-a-classifier":
        teacher = tmp_path / "bert"
        shutil.copytree(tiny_vit, teacher)
        config = json.loads((teacher / "config.json").read_text())
        config.update(model_type="bert", architectures=["BertModel"])
        (teacher / "config.json").write_text(json.dumps(config))
    elif case == "empty-images":
        image_dir = tmp_path / "empty"
        (image_dir / "sub").mkdir(parents=True)
    elif case == "unreadable-images":
        image_dir = tmp_path / "broken"
        image_dir.mkdir()
        (image_dir / "a.jpg").write_bytes(b"not a jpeg")
    elif case == "unknown-student":
        extra = ["--student", "mobilenet_v9"]
    else:
        extra = ["--student", "convnext-atto", "--input-size", "16"]
    out = tmp_path / "student"
    monkeypatch.chdir(tmp_path)
    code = main(["distill", str(teacher), "--images", str(image_dir), "--out", str(out), "--cache",
                 str(tmp_path / "cache"), "--latency-variants", "none", "--no-progress", *extra])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("edgeport: error:")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert not out.exists() and not list(tmp_path.glob(".student*"))


def test_a_config_student_is_distilled_before_export_all_and_gated(tiny_vit, images, faces_dir, tmp_path):
    """[models.distill]: export-all distills first (once), exports and validates the student,
    report.json carries its verdict against the teacher, and the gate applies [budgets.distill]."""
    from edgeport.cli import main

    config = tmp_path / "edgeport.toml"
    config.write_text(f"""
[settings]
artifacts = "artifacts"
variants = ["onnx-fp32"]
latency_runs = 3

[budgets.distill]
max_accuracy_drop = -100.0   # cannot be met: the gate must fail on it

[[models]]
name = "student"
source = "students/student"
eval = "{faces_dir}"

[models.distill]
teacher = "{tiny_vit}"
images = "{images}"
student = "mobilenet_v2-0.35"
input_size = 32
max_steps = 16
latency_variants = []
""")
    os.environ["EDGEPORT_CACHE"] = str(tmp_path / "cache")
    try:
        code = main(["export-all", "--config", str(config), "--no-progress"])
    finally:
        del os.environ["EDGEPORT_CACHE"]
    assert code == 1
    student = tmp_path / "students" / "student"
    assert (student / "model.safetensors").exists() and (student / "distill.json").exists()
    report = json.loads((tmp_path / "artifacts" / "student" / "report.json").read_text())
    assert report["variants"][0]["passed"] and not report["passed"]
    distillation = report["distillation"]
    assert distillation["teacher"] == "tiny-vit" and distillation["student_preset"] == "mobilenet_v2-0.35"
    assert [f["metric"] for f in distillation["failures"]] == ["accuracy_drop_points"]
    assert main(["gate", str(tmp_path / "artifacts" / "student"), "--config", str(config)]) == 1
    config.write_text(config.read_text().replace("max_accuracy_drop = -100.0", "max_accuracy_drop = 100.0"))
    key = json.loads((student / "distill.json").read_text())["key"]
    os.environ["EDGEPORT_CACHE"] = str(tmp_path / "cache")
    try:
        assert main(["export-all", "--config", str(config), "--no-progress"]) == 0
    finally:
        del os.environ["EDGEPORT_CACHE"]
    assert json.loads((student / "distill.json").read_text())["key"] == key  # not distilled again


def test_the_default_student_is_sized_from_the_teacher():
    from edgeport.distillation.students import default_student

    assert default_student(1_893_282, ["female", "male"], 48)[0] == "mobilenet_v2-0.35"  # 0.40M <= 0.47M
    assert default_student(86_000_000, ["female", "male"], 224)[0] == "resnet-18"  # 11.2M <= 21.5M
    name, why = default_student(50_000, ["female", "male"], 32)  # none is small enough: the smallest
    assert name == "mobilenet_v2-0.35" and "none has 25% or less" in why


def test_a_student_from_a_config_file(tiny_vit, images, tmp_path):
    """--student CONFIG.json: the user's own architecture, with the teacher's labels and input size."""
    from transformers import ResNetConfig

    ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                 num_labels=5).save_pretrained(tmp_path / "mine")
    out = tmp_path / "student"
    result = _distill(tiny_vit, images, out, tmp_path / "cache", student=str(tmp_path / "mine" / "config.json"),
                      settings=dict(max_steps=4))
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "resnet" and config["hidden_sizes"] == [8, 16]
    assert config["id2label"] == {"0": "female", "1": "male"}  # the teacher's, not the file's 5 labels
    assert result.report["student"]["preset"] is None and result.report["student"]["config"].endswith("config.json")
