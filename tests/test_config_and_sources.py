"""Config parsing and model sources fail early with messages that name the file and the fix."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeport.converters.atomic import atomic_path
from edgeport.config import ConfigError, load_config
from edgeport.model_source import ModelSourceError, resolve_source
from edgeport.validation.budgets import Budget

REPO = Path(__file__).resolve().parent.parent


def test_default_config_loads_and_points_at_bundled_models():
    cfg = load_config()
    assert [m.name for m in cfg.models] == ["gender-vit", "emotion-vit"]
    assert cfg.budgets["fp32"] == Budget(min_agreement=1.0, max_abs_diff=1e-4)
    for m in cfg.models:
        assert m.eval_dir.is_dir(), m.eval_dir


def test_full_integer_activations_per_model(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[[models]]\nname = "a"\nsource = "x"\n'
                 '[[models]]\nname = "b"\nsource = "y"\nfull_integer_activations = "int16"\n')
    cfg = load_config(p)
    assert cfg.model("a").full_integer_activations == "int8"
    assert cfg.model("b").full_integer_activations == "int16"


def test_precision_search_is_on_unless_a_model_turns_it_off(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[[models]]\nname = "a"\nsource = "x"\n[[models]]\nname = "b"\nsource = "y"\nprecision_search = false\n')
    cfg = load_config(p)
    assert cfg.model("a").precision_search is True and cfg.model("b").precision_search is False


def test_the_bundled_config_no_longer_sets_int16_activations():
    """emotion-vit meets its int8 budgets through the precision search, not a whole-model switch."""
    cfg = load_config(REPO / "edgeport.toml")
    assert all(m.full_integer_activations == "int8" and m.precision_search for m in cfg.models)


def test_model_budget_overrides_merge(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[[models]]\nname = "m"\nsource = "x"\n[models.budgets.fp32]\nmax_abs_diff = 1e-3\n')
    cfg = load_config(p)
    assert cfg.budgets_for(cfg.model("m"))["fp32"] == Budget(min_agreement=1.0, max_abs_diff=1e-3)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[settings]\nthreds = 2\n", "unknown key.*threds"),
        ('[[models]]\nname = "m"\n', "'source' is required"),
        ('[[models]]\nname = "m"\nsource = "x"\nvariants = ["onnx-int4"]\n', "unknown variant.*onnx-int4"),
        ("[budgets.fp32]\nmax_abs_dif = 1\n", "max_abs_dif"),
        ("not toml [", "not valid TOML"),
        ('[[models]]\nname = "m"\nsource = "x"\nfull_integer_activations = "int4"\n',
         "full_integer_activations must be one of 'int8', 'int16', not 'int4'"),
        ('[[models]]\nname = "m"\nsource = "x"\nprecision_search = "yes"\n', "precision_search must be true or false"),
    ],
)
def test_config_errors(tmp_path, text, match):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_hub_id_requires_a_pinned_revision():
    with pytest.raises(ModelSourceError, match="revision"):
        resolve_source("rizvandwiki/gender-classification")
    # pinned, but not in this machine's cache, and the hub is off (HF_HUB_OFFLINE=1): refused up front
    with pytest.raises(ModelSourceError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        resolve_source("rizvandwiki/gender-classification", revision="abc123")


def test_pickle_only_model_is_refused(tiny_vit, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_vit, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(ModelSourceError, match="safetensors.*pytorch_model.bin"):
        resolve_source(str(d))


def test_local_source_records_weights_checksum(tiny_vit):
    info = resolve_source(str(tiny_vit)).describe()
    assert len(info["weights_sha256"]) == 64 and info["random_weights"] is True


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "a.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"whole")
    assert final.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [final]


def test_allow_pickle_is_an_explicit_opt_in_recorded_in_the_report(tiny_vit, faces_dir, tmp_path):
    import json

    import torch
    from transformers import ViTForImageClassification

    from edgeport.cli import main

    d = tmp_path / "pickled"
    shutil.copytree(tiny_vit, d)
    ViTForImageClassification.from_pretrained(str(tiny_vit)).save_pretrained(d, safe_serialization=False)
    (d / "model.safetensors").unlink()
    assert (d / "pytorch_model.bin").exists() and torch.__version__
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    out = tmp_path / "out"
    args = ["export", str(d), "--out", str(out), "--variants", "onnx-fp32", "--config", str(cfg)]
    assert main(args) == 2  # refused without the opt-in
    assert main([*args, "--allow-pickle"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["allow_pickle"] is True and manifest["source"]["weights_file"] == "pytorch_model.bin"
    assert main(["validate", str(out), "--eval", str(faces_dir), "--no-progress", "--config", str(cfg),
                 "--latency-runs", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["allow_pickle"] is True and report["source"]["weights_format"].startswith("pickle")
    assert "pickle weights loaded (--allow-pickle)" in (out / "report.md").read_text()


@pytest.mark.parametrize("config, match", [
    ({"model_type": "bert", "architectures": ["BertForSequenceClassification"]}, "model_type 'bert'"),
    ({"model_type": "detr", "architectures": ["DetrForObjectDetection"]}, "not an image classifier"),
    ({"model_type": "vit", "architectures": ["ViTForMaskedImageModeling"]}, "head ViTForMaskedImageModeling"),
])
def test_a_model_that_is_not_an_image_classifier_is_refused(tiny_vit, tmp_path, config, match):
    import json

    d = tmp_path / "m"
    shutil.copytree(tiny_vit, d)
    (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()), **config}))
    with pytest.raises(ModelSourceError, match=match) as info:
        resolve_source(str(d))
    assert "AutoModelForImageClassification" in str(info.value) and "vit" in str(info.value)
