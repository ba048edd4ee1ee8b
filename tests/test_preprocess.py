"""edgeport's preprocessing equals the Hugging Face image processor's, for the same image."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import ViTImageProcessor

from validation.dataset import open_image
from validation.preprocess import Preprocessing, PreprocessingError


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        dict(size={"height": 64, "width": 48}, resample=3, image_mean=[0.485, 0.456, 0.406],
             image_std=[0.229, 0.224, 0.225]),
        dict(size={"height": 32, "width": 32}, resample=0, do_normalize=False),
    ],
)
def test_matches_vit_image_processor(kwargs, faces_dir, tmp_path):
    processor = ViTImageProcessor(**kwargs)
    processor.save_pretrained(tmp_path)
    ours = Preprocessing.from_file(tmp_path / "preprocessor_config.json")
    for path in sorted(faces_dir.rglob("*.jpg")):
        image = open_image(path)
        expected = processor(images=image, return_tensors="np")["pixel_values"][0]
        got = ours(image)
        assert got.shape == expected.shape
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_grayscale_becomes_three_channels():
    pre = Preprocessing(height=8, width=8)
    out = pre(Image.new("L", (20, 10), color=255))
    assert out.shape == (3, 8, 8)
    np.testing.assert_allclose(out, 1.0)  # (1 - 0.5) / 0.5


def test_center_crop_is_refused_clearly():
    with pytest.raises(PreprocessingError, match="do_center_crop"):
        Preprocessing.from_dict({"do_center_crop": True, "size": {"height": 8, "width": 8}}, where="x.json")


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(PreprocessingError, match="preprocessor_config.json not found"):
        Preprocessing.from_file(tmp_path / "preprocessor_config.json")
