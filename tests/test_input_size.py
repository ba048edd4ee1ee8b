"""An input size for a model whose image processor does not fix one (a shortest-edge resize without
a crop, as TextNet's): `input_size = [H, W]` / `--input-size HxW`, recorded in the manifest, used
by validation, and spelled out for the app in the mobile bundle."""
from __future__ import annotations

import json
import shutil

import pytest

from edgeport.cli import main
from edgeport.config import ConfigError, load_config, parse_input_size


@pytest.fixture
def unsized_vit(tiny_vit, tmp_path):
    """tiny_vit (32x32) with a processor that resizes the shorter side to 32 and does not crop."""
    from transformers import BitImageProcessor

    model = tmp_path / "unsized"
    shutil.copytree(tiny_vit, model)
    BitImageProcessor(size={"shortest_edge": 32}, do_center_crop=False).save_pretrained(model)
    return model


def test_without_an_input_size_the_export_says_how_to_give_one(unsized_vit, tmp_path, capsys):
    assert main(["export", str(unsized_vit), "--out", str(tmp_path / "o"), "--variants", "onnx-fp32",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "varying shape" in err and "input_size = [H, W]" in err and "--input-size HxW" in err


def test_the_input_size_is_exported_validated_and_handed_off(unsized_vit, faces_dir, tmp_path, capsys):
    import edgeport

    before = (unsized_vit / "preprocessor_config.json").read_text()
    out = tmp_path / "out"
    assert main(["export", str(unsized_vit), "--out", str(out), "--variants", "onnx-fp32,tflite-fp32",
                 "--input-size", "32x32", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input_size"] == [32, 32]
    assert manifest["preprocessing"]["resize_to"] == [32, 32] and not manifest["preprocessing"].get("shortest_edge")
    assert json.loads((out / "preprocessor_config.json").read_text())["size"] == {"height": 32, "width": 32}
    assert (unsized_vit / "preprocessor_config.json").read_text() == before  # the model's own file is untouched
    report = edgeport.validate(out, eval=faces_dir, progress=False)
    assert {v["name"]: v["status"] for v in report.variants if v["name"] != "pytorch"} == \
        {"onnx-fp32": "passed", "tflite-fp32": "passed"}
    card = (out / "mobile" / "README.md").read_text()
    assert "does not fix an input size" in card and "fixed it at 32x32" in card
    model = json.loads((out / "mobile" / "model.json").read_text())
    assert model["preprocessing"]["input_size_fixed_at_export"] == [32, 32]


def test_an_input_size_for_a_processor_that_fixes_one_must_agree(tiny_vit, tmp_path, capsys):
    assert main(["export", str(tiny_vit), "--out", str(tmp_path / "o"), "--variants", "onnx-fp32",
                 "--input-size", "48x48", "--no-progress"]) == 2
    assert "already gives 32x32 inputs" in capsys.readouterr().err


def test_input_size_in_the_config_and_on_the_command_line(tmp_path):
    config = tmp_path / "edgeport.toml"
    config.write_text('[[models]]\nname = "m"\nsource = "m"\ninput_size = [224, 192]\n')
    assert load_config(config).models[0].input_size == (224, 192)
    assert parse_input_size("320x240", "--input-size") == (320, 240)
    for bad in ("224", "0x224", "axb", [224], [224.5, 224], "224x224x3"):
        with pytest.raises(ConfigError, match="input_size must be two positive integers"):
            parse_input_size(bad, "here")
    config.write_text('[[models]]\nname = "m"\nsource = "m"\ninput_size = "big"\n')
    with pytest.raises(ConfigError, match="input_size must be two positive integers"):
        load_config(config)
