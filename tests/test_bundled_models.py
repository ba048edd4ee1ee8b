"""The bundled demo models still reach the accuracy recorded in their metrics.json.

Each model under models/ is loaded the way users load it (transformers Auto classes),
run on its committed evaluation subset under data/eval/<task>/<label>/ (folder name ==
label) and its accuracy compared with ``subset_accuracy`` in metrics.json (within 0.01).
Regenerate metrics.json with ``python -m training.evaluate`` (see training/README.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("USE_TF", "0")

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = [
    ("gender-vit", "gender", ["female", "male"]),
    ("emotion-vit", "emotion", ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]),
]
TOLERANCE = 0.01
MAX_SAFETENSORS_BYTES = 8.5 * 1024 * 1024


def _subset(task: str) -> list[tuple[Path, str]]:
    base = ROOT / "data" / "eval" / task
    items = sorted(
        (f, d.name)
        for d in base.iterdir()
        if d.is_dir()
        for f in d.iterdir()
        if f.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    assert items, f"no images under {base}"
    return items


def subset_accuracy(model_dir: Path, items: list[tuple[Path, str]]) -> float:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    torch.set_num_threads(1)
    processor = AutoImageProcessor.from_pretrained(model_dir, use_fast=False)
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(items), 128):
            chunk = items[i : i + 128]
            images = []
            for path, _ in chunk:
                with Image.open(path) as im:
                    images.append(im.convert("RGB"))
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
            pred = model(pixel_values=pixels).logits.argmax(-1).tolist()
            correct += sum(model.config.id2label[p] == label for p, (_, label) in zip(pred, chunk))
    return correct / len(items)


@pytest.mark.parametrize("name,task,labels", BUNDLED, ids=[b[0] for b in BUNDLED])
def test_bundled_model_matches_recorded_subset_accuracy(name: str, task: str, labels: list[str]) -> None:
    model_dir = ROOT / "models" / name
    for f in ("config.json", "model.safetensors", "preprocessor_config.json", "metrics.json", "README.md"):
        assert (model_dir / f).is_file(), f"{model_dir / f} missing"
    assert (model_dir / "model.safetensors").stat().st_size <= MAX_SAFETENSORS_BYTES

    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["ViTForImageClassification"]
    assert [config["id2label"][str(i)] for i in range(len(labels))] == labels
    assert config["label2id"] == {label: i for i, label in enumerate(labels)}

    items = _subset(task)
    assert {label for _, label in items} <= set(labels), "subset folder names must be model labels"

    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["subset_images"] == len(items), "metrics.json was computed on a different subset"
    measured = subset_accuracy(model_dir, items)
    assert measured == pytest.approx(metrics["subset_accuracy"], abs=TOLERANCE), (
        f"{name}: accuracy on data/eval/{task} is {measured:.4f}, "
        f"metrics.json records {metrics['subset_accuracy']:.4f}"
    )
