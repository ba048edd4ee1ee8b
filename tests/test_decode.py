"""A model's decode mode (``decode = "draft"``): JPEGs decoded at a reduced DCT scale, the same way in
calibration, validation, the Python API and the server, and measured against full decoding."""
from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from conftest import serving


def _faces(faces_dir: Path) -> list[Path]:
    return sorted(faces_dir.rglob("*.jpg"))


def _jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def test_draft_decodes_a_jpeg_at_the_smallest_scale_twice_the_resize_size():
    from edgeport.validation.preprocess import Preprocessing, PreprocessingError

    exact = Preprocessing(height=32, width=32, resize_to=(32, 32))
    draft = dataclasses.replace(exact, decode="draft")
    assert exact.draft_size(400, 300) is None and draft.draft_size(400, 300) == (64, 64)
    body = _jpeg((400, 300))
    assert exact.open(io.BytesIO(body)).size == (400, 300)
    assert draft.open(io.BytesIO(body)).size == (100, 75)  # 1/4: both sides still >= 64; 1/8 would not be
    # stored on its side (EXIF orientation 6): decoded reduced, then turned upright
    assert draft.open(io.BytesIO(_jpeg((400, 300), orientation=6))).size == (75, 100)
    png = io.BytesIO()
    Image.open(io.BytesIO(body)).save(png, format="PNG")
    assert draft.open(io.BytesIO(png.getvalue())).size == (400, 300)  # only JPEGs have DCT scales
    small = _jpeg((100, 100))  # already under twice the resize size: decoded fully
    assert draft.open(io.BytesIO(small)).size == (100, 100)
    with pytest.raises(PreprocessingError, match="decode 'fast'"):
        dataclasses.replace(exact, decode="fast")
    assert Preprocessing.from_dict(draft.to_dict()) == draft and draft != exact
    assert Preprocessing.from_dict({k: v for k, v in exact.to_dict().items() if k != "decode"}).decode == "exact"


def test_the_config_takes_decode_per_model(tmp_path):
    from edgeport.config import ConfigError, load_config

    path = tmp_path / "edgeport.toml"
    path.write_text('[[models]]\nname = "m"\nsource = "m"\ndecode = "draft"\n')
    assert load_config(path).models[0].decode == "draft"
    path.write_text('[[models]]\nname = "m"\nsource = "m"\n')
    assert load_config(path).models[0].decode == "exact"
    path.write_text('[[models]]\nname = "m"\nsource = "m"\ndecode = "fast"\n')
    with pytest.raises(ConfigError, match=r"edgeport.toml.*decode must be one of 'exact', 'draft'"):
        load_config(path)


@pytest.fixture(scope="module")
def draft_export(tiny_vit, faces_dir, tmp_path_factory) -> Path:
    """tiny_vit exported (onnx-fp32) and validated with decode = "draft"."""
    from edgeport.config import DEFAULT_BUDGETS
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model, validate_export
    from edgeport.validation.harness import RunSettings

    out = tmp_path_factory.mktemp("draft") / "tiny-vit"
    result = export_model("tiny-vit", resolve_source(str(tiny_vit)), out, variants=["onnx-fp32"], images_dir=None,
                          eval_dir=faces_dir, isolate=False, decode="draft")
    assert result.failed == []
    validate_export(out, faces_dir, dict(DEFAULT_BUDGETS), RunSettings(runs=2, warmup=1), progress=False)
    return out


def _logits(model_dir: Path, paths: list[Path], decode: str) -> np.ndarray:
    from edgeport.runtimes import runner_class
    from edgeport.validation.preprocess import Preprocessing

    pre = Preprocessing.from_file(model_dir / "preprocessor_config.json", decode=decode)
    with runner_class("onnxruntime")(model_dir / "model.onnx") as runner:
        return runner.infer(np.stack([pre(pre.open(p)) for p in paths]))


def test_validation_judges_draft_pixels_and_reports_what_they_change(draft_export, faces_dir):
    manifest = json.loads((draft_export / "manifest.json").read_text())
    assert manifest["preprocessing"]["decode"] == "draft"
    report = json.loads((draft_export / "report.json").read_text())
    check = report["decode"]
    faces = _faces(faces_dir)
    # every face is a 200x200 JPEG and the input 32x32: each is decoded at 100x100
    assert check["mode"] == "draft" and check["images"] == len(faces) == check["reduced_images"]
    exact, draft = _logits(draft_export, faces, "exact"), _logits(draft_export, faces, "draft")
    assert not np.array_equal(exact, draft)
    assert check["max_abs_diff"] == pytest.approx(float(np.abs(exact - draft).max()), rel=1e-5)
    assert check["top1_agreement_with_exact"] == pytest.approx(float(np.mean(exact.argmax(1) == draft.argmax(1))))
    assert "Decoding: draft" in (draft_export / "report.md").read_text()
    assert '<p id="decode">Decoding: draft' in (draft_export / "report.html").read_text()
    from edgeport.mobile_bundle import _input_steps, preprocessing_spec

    spec = preprocessing_spec(manifest["preprocessing"])  # the mobile hand-off spells the decoding out
    assert spec["decode"]["mode"] == "draft" and "inSampleSize" in spec["decode"]["rule"]
    assert _input_steps(spec).startswith("JPEGs decoded at a reduced scale first")
    assert "decode" not in preprocessing_spec({**manifest["preprocessing"], "decode": "exact"})


def test_the_api_and_the_server_decode_as_validation_did(draft_export, faces_dir, tmp_path):
    import edgeport
    from edgeport.serving.selection import ServeError, select_variant

    faces = _faces(faces_dir)[:3]
    draft = _logits(draft_export, faces, "draft")
    classifier = edgeport.load(draft_export, variant="onnx-fp32")
    np.testing.assert_allclose(classifier.logits(faces), draft, atol=1e-5)
    with serving(draft_export, "--variant", "onnx-fp32") as (url, _, _):
        for path, row in zip(faces, draft):  # raw bytes: decoded on the event loop, scores are softmax
            r = requests.post(url, data=path.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30)
            assert r.status_code == 200, r.text
            got = {a["label"]: a["score"] for a in r.json()}
            e = np.exp(row.astype(np.float64) - row.max())
            np.testing.assert_allclose([got["female"], got["male"]], e / e.sum(), atol=1e-6)
    # a manifest whose decode mode is not the one the report judged is not served
    changed = tmp_path / "tiny-vit"
    shutil.copytree(draft_export, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["preprocessing"]["decode"] = "exact"
    (changed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ServeError, match="judged images decoded 'draft'.*edgeport validate"):
        select_variant(changed, "onnx-fp32")


def test_export_takes_decode_on_the_command_line(tiny_vit, tmp_path, monkeypatch):
    """--decode reaches the export (edgeport export -> api.export -> pipeline.export_model); the
    config's decode when it is not given."""
    import edgeport.pipeline
    from edgeport.cli import main

    seen = []

    class Stop(Exception):
        pass

    def export_model(*args, **kwargs):
        seen.append(kwargs.get("decode"))
        raise Stop

    monkeypatch.setattr(edgeport.pipeline, "export_model", export_model)
    config = tmp_path / "edgeport.toml"
    config.write_text(f'[[models]]\nname = "tiny"\nsource = "{tiny_vit}"\ndecode = "draft"\n')
    for args in (["export", str(tiny_vit), "--decode", "draft"], ["export", str(tiny_vit)],
                 ["export", "tiny", "--config", str(config)], ["export", "tiny", "--config", str(config),
                                                                "--decode", "exact"]):
        with pytest.raises(Stop):
            main([*args, "--out", str(tmp_path / "out"), "--no-progress"])
    assert seen == ["draft", "exact", "draft", "exact"]
