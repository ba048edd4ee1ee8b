"""A checkpoint saved in shards (model.safetensors.index.json + model-0000K-of-0000N.safetensors,
what save_pretrained writes for a large model) exports like a single file, with every shard's
sha256 in the manifest, and a change to any shard makes the next export redo the variants."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeport.model_source import SHARD_INDEX, ModelSourceError, resolve_source


@pytest.fixture
def sharded_vit(tiny_vit, tmp_path):
    """tiny_vit saved again in shards of at most 30 KB."""
    from transformers import AutoModelForImageClassification

    out = tmp_path / "sharded"
    model = AutoModelForImageClassification.from_pretrained(str(tiny_vit))
    model.save_pretrained(out, safe_serialization=True, max_shard_size="30KB")
    for name in ("preprocessor_config.json",):
        shutil.copyfile(tiny_vit / name, out / name)
    assert (out / SHARD_INDEX).is_file() and not (out / "model.safetensors").exists()
    return out


def test_a_sharded_checkpoint_exports_with_every_shard_recorded(sharded_vit, tiny_vit, tmp_path):
    from edgeport.pipeline import export_model
    from edgeport.runtimes import runner_class

    shards = sorted(p.name for p in sharded_vit.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2
    out = tmp_path / "out"
    result = export_model("sharded", resolve_source(str(sharded_vit)), out, variants=["onnx-fp32"], images_dir=None,
                          progress=False, isolate=False)
    assert result.failed == []
    source = json.loads((out / "manifest.json").read_text())["source"]
    assert source["weights_file"] == SHARD_INDEX and source["weights_format"] == f"safetensors, {len(shards)} shards"
    assert [s["file"] for s in source["weights_shards"]] == shards
    assert all(len(s["sha256"]) == 64 for s in source["weights_shards"]) and len(source["weights_sha256"]) == 64
    # the same weights as the single-file model: the file computes the same logits
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with runner_class("torch")(str(tiny_vit)) as reference, runner_class("onnxruntime")(out / "model.onnx") as onnx:
        np.testing.assert_allclose(onnx.infer(images), reference.infer(images), atol=1e-4)

    # one shard changed: the weights' sha256 changes, and the next export redoes the variant
    from safetensors.numpy import load_file, save_file

    changed = sharded_vit / shards[-1]
    tensors = load_file(changed)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, changed, metadata={"format": "pt"})
    export_model("sharded", resolve_source(str(sharded_vit)), out, variants=["onnx-fp32"], images_dir=None,
                 progress=False, isolate=False)
    after = json.loads((out / "manifest.json").read_text())
    assert after["source"]["weights_sha256"] != source["weights_sha256"]
    assert {s["file"]: s["sha256"] for s in after["source"]["weights_shards"]}[shards[-1]] != \
        {s["file"]: s["sha256"] for s in source["weights_shards"]}[shards[-1]]
    (record,) = after["variants"]
    assert not record.get("reused")


def test_a_missing_shard_is_named(sharded_vit):
    shard = sorted(sharded_vit.glob("model-*-of-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ModelSourceError, match=f"names 1 shard\\(s\\) that are not in .*{shard.name}"):
        resolve_source(str(sharded_vit))


def test_an_index_that_points_outside_its_folder_is_refused(sharded_vit):
    index = json.loads((sharded_vit / SHARD_INDEX).read_text())
    key = next(iter(index["weight_map"]))
    index["weight_map"][key] = "../elsewhere.safetensors"
    (sharded_vit / SHARD_INDEX).write_text(json.dumps(index))
    with pytest.raises(ModelSourceError, match="must name .safetensors files in the same folder"):
        resolve_source(str(sharded_vit))
