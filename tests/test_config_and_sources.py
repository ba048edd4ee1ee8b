"""Config parsing and model sources fail early with messages that name the file and the fix."""
from __future__ import annotations

import shutil

import pytest

from converters.atomic import atomic_path
from edgeport.config import ConfigError, load_config
from edgeport.model_source import ModelSourceError, resolve_source
from validation.budgets import Budget


def test_default_config_loads_and_points_at_bundled_models():
    cfg = load_config()
    assert [m.name for m in cfg.models] == ["gender-vit", "emotion-vit"]
    assert cfg.budgets["fp32"] == Budget(min_agreement=1.0, max_abs_diff=1e-4)
    for m in cfg.models:
        assert m.eval_dir.is_dir(), m.eval_dir


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
    src = resolve_source("rizvandwiki/gender-classification", revision="abc123")
    assert not src.local and src.describe() == {"id": "rizvandwiki/gender-classification", "revision": "abc123"}


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
