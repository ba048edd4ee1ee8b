"""edgeport's preprocessing equals each architecture's own Hugging Face image processor.

Every image-processor class that the supported architectures use (transformers' auto map:
ViT and Swin -> ViTImageProcessor, ConvNeXt/ResNet/RegNet -> ConvNextImageProcessor, DINOv2 ->
BitImageProcessor, ...) is saved with its defaults and with settings users change, reloaded
through AutoImageProcessor, and compared on real faces cut to non-square shapes (so the
aspect-ratio resize and the crop are exercised) to 1e-6. The mobile bundle's written-out
steps are re-implemented from model.json alone, as an app would, and compared too.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import transformers
from PIL import Image

from edgeport.mobile_bundle import preprocessing_spec
from edgeport.validation.dataset import open_image
from edgeport.validation.preprocess import Preprocessing, PreprocessingError

# (processor class, its settings): the defaults, and the variations that change the steps.
CASES = [
    ("ViTImageProcessor", {}),  # ViT, Swin, Swinv2
    ("ViTImageProcessor", dict(size={"height": 64, "width": 48}, resample=3, image_mean=[0.485, 0.456, 0.406],
                               image_std=[0.229, 0.224, 0.225])),
    ("ViTImageProcessor", dict(size={"height": 32, "width": 32}, resample=0, do_normalize=False)),
    ("DeiTImageProcessor", {}),  # resize 256, centre crop 224, bicubic
    ("BeitImageProcessor", {}),
    ("ConvNextImageProcessor", {}),  # shortest_edge 384: warped, no crop
    ("ConvNextImageProcessor", dict(size={"shortest_edge": 224}, crop_pct=0.875)),  # ResNet/RegNet: crop_pct
    ("MobileViTImageProcessor", {}),  # shortest edge 224, crop 256, no normalization, BGR
    ("MobileViTImageProcessor", dict(do_flip_channel_order=False)),
    ("EfficientNetImageProcessor", {}),  # nearest, include_top divides by std twice
    ("EfficientNetImageProcessor", dict(rescale_factor=1 / 127.5, rescale_offset=True, include_top=False)),
    ("BitImageProcessor", {}),  # DINOv2: shortest edge 256 -> crop 224, CLIP mean/std
    ("BitImageProcessor", dict(size={"shortest_edge": 40, "longest_edge": 50}, crop_size={"height": 32, "width": 32})),
    ("MobileNetV2ImageProcessor", {}),
    ("MobileNetV1ImageProcessor", {}),
    ("LevitImageProcessor", {}),  # shortest edge scaled by 256/224
    ("PoolFormerImageProcessor", {}),  # crop_pct 0.9: short side to 224 / 0.9, crop 224
    ("PoolFormerImageProcessor", dict(size={"height": 48, "width": 40}, crop_size={"height": 32, "width": 32})),
    ("PvtImageProcessor", {}),
    ("SegformerImageProcessor", dict(size={"height": 64, "width": 64})),
    ("CLIPImageProcessor", {}),  # CLIP, MetaCLIP 2: shortest edge 224 -> crop 224, bicubic, CLIP mean/std
    ("EfficientFormerImageProcessor", dict(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64})),
    ("TextNetImageProcessor", dict(size={"height": 40, "width": 48})),  # both sides rounded up to 32: 64x64
]


def _shapes(faces_dir):
    """Real faces as portrait, landscape and small crops (smaller than some crop sizes: padding)."""
    images = []
    for path in sorted(faces_dir.rglob("*.jpg"))[:3]:
        face = open_image(path)
        w, h = face.size
        images += [face, face.crop((0, 0, w * 2 // 3, h)), face.crop((0, 0, w, h // 2)), face.resize((90, 70))]
    return images


def _from_spec(spec: dict, image: Image.Image) -> np.ndarray:
    """model.json's preprocessing applied literally (what an app developer writes), NCHW."""
    methods = {v: k for k, v in {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}.items()}
    r = spec["resize"]
    if r["mode"] == "exact":
        image = image.resize((r["width"], r["height"]), methods[r["method"]], reducing_gap=None)
    elif r["mode"] == "shortest_edge":
        w, h = image.size
        short, long = min(w, h), max(w, h)
        new_short, new_long = r["shortest_edge"], int(r["shortest_edge"] * long / short)
        if r.get("rule", "").count("at most"):
            cap = int(r["rule"].rsplit("at most ", 1)[1])
            if new_long > cap:
                new_short, new_long = int(cap * new_short / new_long), cap
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        if size != image.size:
            image = image.resize(size, methods[r["method"]], reducing_gap=None)
    x = np.asarray(image)
    crop = spec["center_crop"]
    if crop:
        ch, cw = crop["height"], crop["width"]
        if x.shape[0] < ch or x.shape[1] < cw:
            pad = np.zeros((max(x.shape[0], ch), max(x.shape[1], cw), 3), x.dtype)
            t, l_ = -(-(pad.shape[0] - x.shape[0]) // 2), -(-(pad.shape[1] - x.shape[1]) // 2)
            pad[t:t + x.shape[0], l_:l_ + x.shape[1]] = x
            x = pad
        top, left = (x.shape[0] - ch) // 2, (x.shape[1] - cw) // 2
        x = x[top:top + ch, left:left + cw]
    x = (x.astype(np.float64) * spec["rescale_factor"]).astype(np.float32) + np.float32(spec["offset"])
    x = (x - np.float32(spec["mean"])) / np.float32(spec["std"])
    if "extra_std" in spec:
        x = x / np.float32(spec["extra_std"])
    if spec["channel_order"] == "BGR":
        x = x[..., ::-1]
    return x.transpose(2, 0, 1)


@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_the_models_own_image_processor(name, kwargs, faces_dir, tmp_path):
    getattr(transformers, name)(**kwargs).save_pretrained(tmp_path)
    processor = transformers.AutoImageProcessor.from_pretrained(str(tmp_path), use_fast=False)
    assert type(processor).__name__ == name
    ours = Preprocessing.from_file(tmp_path / "preprocessor_config.json")
    spec = preprocessing_spec(ours.to_dict())
    # what a server reads back from the manifest, without transformers: the same steps, the same bits
    recorded = Preprocessing.from_dict(json.loads(json.dumps(ours.to_dict())))
    assert recorded == ours
    for image in _shapes(faces_dir):
        expected = processor(images=image, return_tensors="np")["pixel_values"][0]
        got = ours(image)
        assert np.array_equal(recorded(image), got)
        assert np.array_equal(got, _computed(ours, image))  # the lookup table gives the computed bits
        assert got.shape == expected.shape == (3, ours.height, ours.width) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
        np.testing.assert_allclose(_from_spec(spec, image), expected, atol=1e-6, rtol=0)


def _computed(pre: Preprocessing, image: Image.Image) -> np.ndarray:
    """The float steps computed over the pixels, as ``Preprocessing.__call__`` did before its lookup table."""
    x = pre.float_steps(pre.pixels(image))
    if pre.channel_order == "BGR":
        x = x[..., ::-1]
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def test_the_lookup_table_gives_every_value_the_computed_bits():
    image = Image.new("RGB", (256, 16))
    image.putdata([(v, 255 - v, (v * 7) % 256) for v in range(256)] * 16)  # every value in every channel
    for pre in (Preprocessing(height=16, width=256),
                Preprocessing(height=16, width=256, image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225)),
                Preprocessing(height=16, width=256, channel_order="BGR", do_normalize=False),
                Preprocessing(height=16, width=256, rescale_offset=True, extra_std=(0.3, 0.2, 0.1), rescale_factor=1 / 127.5),
                Preprocessing(height=16, width=256, do_rescale=False, image_mean=(0.1,), image_std=(3.0,))):
        got = pre(image)
        assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and got.shape == (3, 16, 256)
        assert np.array_equal(got, _computed(pre, image)), pre


def test_a_processor_these_steps_do_not_reproduce_is_refused(tmp_path, monkeypatch):
    # Without its rule, LeViT's 256/224 resize is read as a plain shortest-edge resize and crop:
    # the parity check must catch that instead of running the model on wrong inputs.
    from edgeport.validation import preprocess

    monkeypatch.delitem(preprocess.PROCESSOR_RULES, "LevitImageProcessor")
    transformers.LevitImageProcessor().save_pretrained(tmp_path)
    with pytest.raises(PreprocessingError, match="LevitImageProcessor differs from transformers' own output"):
        Preprocessing.from_file(tmp_path / "preprocessor_config.json")


def test_grayscale_becomes_three_channels():
    pre = Preprocessing(height=8, width=8)
    out = pre(Image.new("L", (20, 10), color=255))
    assert out.shape == (3, 8, 8)
    np.testing.assert_allclose(out, 1.0)  # (1 - 0.5) / 0.5


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(PreprocessingError, match="preprocessor_config.json not found"):
        Preprocessing.from_file(tmp_path / "preprocessor_config.json")


def test_a_processor_without_an_image_size_is_refused_by_name(tmp_path):
    transformers.Siglip2ImageProcessor().save_pretrained(tmp_path)  # patches up to a budget, no image size
    with pytest.raises(PreprocessingError, match="Siglip2ImageProcessor has no image size"):
        Preprocessing.from_file(tmp_path / "preprocessor_config.json")
