"""The Python API (edgeport.api): the README's example, run as written with its paths swapped for a
small model made on the fly, and what each call returns."""
from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import REPO


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("The same from Python"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: the Python API example is gone"
    return match.group(1)


def test_the_readme_example_runs(tiny_vit, faces_dir, calib_dir, tmp_path, monkeypatch, capsys):
    import edgeport
    from edgeport.runtimes import runner_class
    from edgeport.validation.dataset import open_image
    from edgeport.validation.preprocess import Preprocessing

    face = sorted(faces_dir.rglob("*.jpg"))[0]
    out = tmp_path / "artifacts" / "tiny-vit"
    code = _readme_example()
    for old, new in (('"data/eval/gender/female/10_1_1_20170109203520178.jpg"', f'"{face}"'),
                     ('"models/gender-vit"', f'"{tiny_vit}"'), ('"artifacts/gender-vit"', f'"{out}"'),
                     ('"data/calib/gender"', f'"{calib_dir}"'), ('"data/eval/gender"', f'"{faces_dir}"')):
        assert old in code, old
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)  # a folder with no edgeport.toml: the defaults
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 (the documented example, run as written)
    assert scope["result"].failed == []
    report = scope["report"]
    assert isinstance(report, edgeport.Report) and [v["name"] for v in report.variants][:2] == \
        ["onnx-fp32", "onnx-int8-dynamic"]
    assert report.passed == (not report.failures) and "onnx-fp32" in report.markdown
    assert (out / "report.json").is_file() and scope["verdict"].passed == report.passed
    printed = capsys.readouterr().out
    answer = eval(printed.strip().splitlines()[-1].split(" ", 1)[1])  # noqa: S307 (what the example printed)
    # the classifier's scores are the softmax of the validated file's logits for that image
    variant = scope["classifier"].variant
    pre = Preprocessing.from_file(out / "preprocessor_config.json")
    path = {"onnx-fp32": "model.onnx", "onnx-int8-dynamic": "model_int8_dynamic.onnx"}[variant]
    with runner_class("onnxruntime")(out / path) as runner:
        logits = runner.infer(pre(open_image(face))[None])[0].astype(np.float64)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    got = {a["label"]: a["score"] for a in answer}
    np.testing.assert_allclose([got["female"], got["male"]], expected, atol=1e-6)


def test_gate_and_report_objects(validated_tiny, tmp_path):
    import json

    import edgeport

    report = edgeport.Report.read(validated_tiny)
    assert report.model == "tiny-vit" and report.passed and report.failures == {}
    verdict = edgeport.gate(validated_tiny)
    assert verdict.passed and [m.model for m in verdict.models] == ["tiny-vit"] and verdict.missing == []
    # a report whose variant missed its budget: the gate and the report both name it
    data = json.loads((validated_tiny / "report.json").read_text())
    v = data["variants"][1]
    v.update(passed=False, status="failed", failures=[{"metric": "agreement", "message": "agreement 50% < 99%"}])
    data["passed"] = False
    (tmp_path / "report.json").write_text(json.dumps(data))
    failed = edgeport.gate(tmp_path / "report.json")
    assert not failed.passed and any("agreement" in r for r in failed.models[0].reasons)
    assert edgeport.Report.read(tmp_path).failures == {v["name"]: ["agreement 50% < 99%"]}
    with pytest.raises(FileNotFoundError, match="edgeport validate"):
        edgeport.gate(tmp_path / "nothing-here.json")


def test_load_refuses_what_did_not_pass_and_takes_arrays(validated_tiny, faces_dir):
    from PIL import Image

    import edgeport
    from edgeport.serving.selection import ServeError

    with edgeport.load(validated_tiny, "onnx-fp32") as classifier:
        face = sorted(faces_dir.rglob("*.jpg"))[0]
        from_path = classifier(face, top_k=1)
        from_array = classifier(np.asarray(Image.open(face).convert("RGB")), top_k=1)
        assert from_path == from_array and len(from_path) == 1
        assert len(classifier([face, face])) == 2
        with pytest.raises(ValueError, match="uint8"):
            classifier(np.zeros((4, 4), np.float32))
    with pytest.raises(ServeError, match="no variant"):
        edgeport.load(validated_tiny, "no-such-variant")


def test_init_writes_a_config_that_reads_back_with_the_default_budgets(tmp_path, monkeypatch, capsys):
    import edgeport
    from edgeport.cli import main
    from edgeport.config import DEFAULT_BUDGETS, load_config

    monkeypatch.chdir(tmp_path)
    assert main(["init", "org/classifier", "--revision", "0123abc", "--eval", "faces/eval"]) == 0
    cfg = load_config()  # ./edgeport.toml, as every command reads it
    assert cfg.path == tmp_path / "edgeport.toml" and cfg.budgets == DEFAULT_BUDGETS
    model = cfg.models[0]
    assert (model.name, model.source, model.revision) == ("classifier", "org/classifier", "0123abc")
    assert model.eval_dir == tmp_path / "faces" / "eval" and model.calibration_dir == tmp_path / "data" / "calib"
    # never replaced by accident
    assert main(["init", "models/other"]) == 2
    assert "--force" in capsys.readouterr().err and load_config().models[0].name == "classifier"
    path = edgeport.init("models/other", force=True)
    assert load_config(path).models[0].source == "models/other"
