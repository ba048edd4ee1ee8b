"""Image preprocessing: the model's own image processor, spelled out as plain steps.

A model folder's ``preprocessor_config.json`` is read by transformers' own processor class
(``AutoImageProcessor``, so class defaults apply as they do for the model's users), and its
settings are turned into a ``Preprocessing``: resize (to a fixed size, or the shorter side to
a length keeping the aspect ratio), centre crop, rescale, normalize, channel order. Those
steps, not the processor object, are what edgeport runs, because they must be written out
for the mobile hand-off and every runtime must get byte-identical input.

What differs between processor classes (ConvNeXt's ``crop_pct``, LeViT's 256/224 resize,
MobileViT's BGR order, EfficientNet's offset, TextNet's sides rounded up to 32) lives in
``PROCESSOR_RULES``, one small entry per class. Every ``Preprocessing`` made from a model is checked against the processor itself
on two synthetic images (portrait and landscape) before it is used: a processor whose
behaviour these steps do not reproduce is refused with the difference, never run wrong.
"""
from __future__ import annotations

import json

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgeport.validation.dataset import ImageSource, open_image

# PIL resample codes as stored in Hugging Face preprocessor configs.
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# How images are decoded before these steps: "exact" decodes every pixel (what transformers'
# processors are given); "draft" lets libjpeg decode a JPEG at a reduced DCT scale that keeps it at
# least DRAFT_GAP times the resize size (PIL's Image.draft, as Image.thumbnail's reducing_gap does).
DECODE_MODES = ("exact", "draft")
# Measured on gender-vit's 400 evaluation images (200x200 JPEGs, 48x48 input; onnx-fp32): with a gap
# of 2 (decoded at 100x100) every top-1 class equals full decoding's, logits at most 0.151 apart,
# pixels at most 9/255 (0.35/255 on average); with a gap of 1 (50x50) 99.5% and 0.714. Decoding and
# resizing a 4032x3024 photo to 224x224 takes 12.8 ms instead of 79.9 ms (docs/decisions/serving-decode.md).
DRAFT_GAP = 2
# The largest difference from the processor's own output that the self-check accepts. The
# steps are the same float32 operations in the same order, so they normally match exactly.
PARITY_TOLERANCE = 1e-6


class PreprocessingError(ValueError):
    """The preprocessor config asks for something this pipeline does not implement."""


@dataclass(frozen=True)
class Preprocessing:
    """RGB image -> resize -> centre crop -> rescale -> normalize -> channel order -> CHW float32.

    ``height`` x ``width`` is the network input. Resizing goes to ``resize_to`` (height,
    width) when set; to the input size when neither it nor ``shortest_edge`` is set; else the
    shorter side becomes ``shortest_edge`` and the longer one keeps the aspect ratio
    (``int(shortest_edge * long / short)``, capped by ``longest_edge``), as transformers'
    ``get_resize_output_image_size`` does. A centre crop of ``height`` x ``width`` follows
    when ``do_center_crop``.
    """

    height: int
    width: int
    resample: int = 2
    do_resize: bool = True
    resize_to: tuple[int, int] | None = None
    shortest_edge: int | None = None
    longest_edge: int | None = None
    do_center_crop: bool = False
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    rescale_offset: bool = False  # subtract 1 after rescaling (EfficientNet)
    do_normalize: bool = True
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    extra_std: tuple[float, ...] | None = None  # divide by this once more after normalizing (EfficientNet)
    channel_order: str = "RGB"  # or "BGR" (MobileViT)
    processor: str = field(default="", compare=False)  # the transformers class it was read from
    decode: str = "exact"  # or "draft": see DECODE_MODES; edgeport's own setting, not the processor's

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise PreprocessingError(f"decode {self.decode!r}: one of {', '.join(DECODE_MODES)}")

    @classmethod
    def from_file(cls, path: str | Path, *, check: bool = True, decode: str = "exact") -> "Preprocessing":
        """Read a model folder's ``preprocessor_config.json`` through the model's own processor class
        (``decode``: how images are decoded before the steps; see DECODE_MODES)."""
        path = Path(path)
        if not path.exists():
            raise PreprocessingError(
                f"{path} not found: the model directory needs its preprocessor_config.json "
                "(save it with AutoImageProcessor.save_pretrained)"
            )
        processor = load_processor(path)
        pre = from_processor(processor, where=str(path))
        if check:
            check_parity(pre, processor, where=str(path))
        return replace(pre, decode=decode)

    @classmethod
    def from_dict(cls, steps: dict[str, Any]) -> "Preprocessing":
        """The steps ``to_dict`` wrote (a manifest's ``preprocessing``), without transformers: they were
        checked against the model's own processor when the export read them (``from_file``), so a
        server or an app that only runs the exported files needs neither torch nor transformers."""
        names = {f for f in cls.__dataclass_fields__}
        unknown = set(steps) - names - {"resample_name", "layout"}
        if unknown:
            raise PreprocessingError(f"unknown preprocessing step(s) {sorted(unknown)}: written by a newer edgeport?")
        values = {k: v for k, v in steps.items() if k in names}
        for key in ("resize_to", "image_mean", "image_std", "extra_std"):  # JSON lists back to tuples
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def resize_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) an image of ``width`` x ``height`` is resized to."""
        if self.resize_to is not None:
            return self.resize_to[1], self.resize_to[0]
        if self.shortest_edge is None:
            return self.width, self.height
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        if self.longest_edge is not None and new_long > self.longest_edge:
            new_short, new_long = int(self.longest_edge * new_short / new_long), self.longest_edge
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def draft_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The least size a ``width`` x ``height`` JPEG may be decoded at (``decode="draft"``): a square
        of DRAFT_GAP times the longer side it is resized to, whichever way up it is stored; None
        (decode fully) with ``decode="exact"`` or without a resize."""
        if self.decode != "draft" or not self.do_resize:
            return None
        side = DRAFT_GAP * max(self.resize_size(width, height))
        return side, side

    def open(self, source: ImageSource) -> Image.Image:
        """Decode ``source`` (a file, bytes, a binary stream, or what ``peek_image`` returned) as this
        model's inputs are decoded everywhere, validation and serving alike (``open_image``)."""
        return open_image(source, draft=self.draft_size)

    def to_dict(self) -> dict:
        """The steps as plain data, for manifests, reports and the mobile hand-off."""
        d = asdict(self)
        d["resample_name"] = RESAMPLE_NAMES.get(self.resample, str(self.resample))
        d["layout"] = "NCHW"
        return d

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The resize and centre crop alone: uint8 RGB (H, W, 3), what an app hands an image-input model."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self.do_resize:
            size = self.resize_size(*image.size)
            if image.size != size:
                image = image.resize(size, resample=self.resample, reducing_gap=None)
        x = np.asarray(image)
        if self.do_center_crop:
            x = _center_crop(x, self.height, self.width)
        return x

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Turn a PIL image into a float32 (C, H, W) array."""
        x = self.pixels(image)
        table = self._value_table
        out = np.empty((3, x.shape[0], x.shape[1]), dtype=np.float32)
        for k, c in enumerate((2, 1, 0) if self.channel_order == "BGR" else (0, 1, 2)):
            table[c].take(x[..., c], out=out[k])
        return out

    @cached_property
    def _value_table(self) -> np.ndarray:
        """(3, 256) float32: what ``float_steps`` make of each uint8 value in each RGB channel. The steps
        are elementwise, so looking the pixels up gives their very bits, in a third of the time
        (14 against 33 us for a 48x48 image: numpy's overhead on five passes over a small array)."""
        values = np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, axis=2)  # (1, 256, 3): an image
        return np.ascontiguousarray(self.float_steps(values)[0].T)

    def float_steps(self, x: np.ndarray) -> np.ndarray:
        """Rescale, offset, normalize and extra std of uint8 pixels (H, W, 3), as float32, the way the
        processors compute them (``__call__`` looks the results up instead)."""
        if self.do_rescale:
            # float64 multiply then float32, the order transformers uses, for identical bits
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
            if self.rescale_offset:
                x = x - np.float32(1)
        else:
            x = x.astype(np.float32)
        if self.do_normalize:
            x = (x - np.asarray(self.image_mean, dtype=np.float32)) / np.asarray(self.image_std, dtype=np.float32)
        if self.extra_std is not None:
            x = x / np.asarray(self.extra_std, dtype=np.float32)
        return x


def _center_crop(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """transformers' ``center_crop`` on an HWC array, zero padding included for small images."""
    h, w = x.shape[:2]
    if h < height or w < width:
        padded = np.zeros((max(h, height), max(w, width), x.shape[2]), dtype=x.dtype)
        top, left = -(-(padded.shape[0] - h) // 2), -(-(padded.shape[1] - w) // 2)  # ceil, as transformers
        padded[top:top + h, left:left + w] = x
        x, h, w = padded, padded.shape[0], padded.shape[1]
    top, left = (h - height) // 2, (w - width) // 2
    return x[top:top + height, left:left + width]


VARYING_SIZE = "a shortest-edge resize without a centre crop gives inputs of varying shape"


def fix_input_size(config_path: Path, input_size: tuple[int, int]) -> bool:
    """Make the processor file at ``config_path`` (a copy beside the artifacts, never the model's
    own) resize to ``input_size`` (H, W), when the processor does not fix a size itself.

    Returns True when the file was rewritten. A processor that fixes a size already is left as
    it is when the sizes agree, and refused when they differ: ``input_size`` is for processors
    whose output shape follows the image's (a shortest-edge resize and no crop: TextNet's).
    The rewritten file is read by the model's own processor class like any other, and its
    steps checked against that class's output (``from_file``), so the app resizes as
    transformers would at that size.
    """
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0:
        raise PreprocessingError(f"input size {height}x{width}: both sides must be positive")
    try:
        fixed = from_processor(load_processor(config_path), where=str(config_path))
    except PreprocessingError as exc:
        if VARYING_SIZE not in str(exc):
            raise
    else:
        if (fixed.height, fixed.width) != (height, width):
            raise PreprocessingError(
                f"{config_path}: its processor already gives {fixed.height}x{fixed.width} inputs; input_size "
                f"({height}x{width}) is for processors that do not fix one (a shortest-edge resize without a crop)")
        return False
    data = json.loads(Path(config_path).read_text())
    data["size"] = {"height": height, "width": width}
    Path(config_path).write_text(json.dumps(data, indent=2) + "\n")
    return True


def load_processor(config_path: Path) -> Any:
    """The model's own (slow, PIL-based) image processor class, from its folder."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(str(config_path.parent), use_fast=False)
    except (OSError, ValueError, KeyError) as exc:
        raise PreprocessingError(f"{config_path}: transformers cannot load this image processor: {exc}") from None


# --- per processor class: how its settings become the steps above ---------------------------------

def _size(size: dict, where: str) -> dict[str, Any]:
    """Resize fields for a processor ``size`` dict of either form."""
    if "height" in size and "width" in size:
        return {"resize_to": (int(size["height"]), int(size["width"]))}
    if "shortest_edge" in size:
        # The (slow, PIL) processors of the image classifiers pass only shortest_edge on to
        # get_resize_output_image_size: a longest_edge in their size is ignored, so here too
        # (the parity check holds a class that honours it to that).
        return {"shortest_edge": int(size["shortest_edge"])}
    raise PreprocessingError(f"{where}: size {size} is not supported; expected {{'height', 'width'}}, "
                             "{'shortest_edge'} or {'shortest_edge', 'longest_edge'}")


def _standard(p: Any, where: str) -> dict[str, Any]:
    """resize (either size form) -> optional centre crop to crop_size: most processors."""
    if not isinstance(getattr(p, "size", None), dict):  # e.g. SigLIP2's: patches up to a budget, no image size
        raise PreprocessingError(f"{where}: {type(p).__name__} has no image size to resize to; this processor is "
                                 "not supported")
    fields = _size(p.size, where)
    crop = getattr(p, "crop_size", None) if getattr(p, "do_center_crop", False) else None
    if crop:
        return {**fields, "do_center_crop": True, "height": int(crop["height"]), "width": int(crop["width"])}
    if "resize_to" not in fields:
        raise PreprocessingError(f"{where}: {VARYING_SIZE}; a static-shape export needs a fixed size: give the "
                                 "model one (input_size = [H, W] on the model in edgeport.toml, or --input-size HxW), "
                                 "which the app then resizes to")
    return {**fields, "height": fields["resize_to"][0], "width": fields["resize_to"][1]}


def _convnext(p: Any, where: str) -> dict[str, Any]:
    """ConvNeXt (also ResNet, RegNet): below 384 px, resize the short side to size/crop_pct, crop to size."""
    edge = int(p.size["shortest_edge"])
    if edge < 384:
        return {"shortest_edge": int(edge / p.crop_pct), "do_center_crop": True, "height": edge, "width": edge}
    return {"resize_to": (edge, edge), "height": edge, "width": edge}  # warped, not cropped, at 384+


def _levit(p: Any, where: str) -> dict[str, Any]:
    """LeViT: a shortest_edge size is scaled by 256/224 before resizing; then the usual crop."""
    fields = _standard(p, where)
    if "shortest_edge" in p.size:
        fields["shortest_edge"] = int((256 / 224) * p.size["shortest_edge"])
    return fields


def _poolformer(p: Any, where: str) -> dict[str, Any]:
    """PoolFormer: with crop_pct, resize to size / crop_pct (the short side for a square or
    shortest_edge size, both sides otherwise), then the usual crop."""
    fields = _standard(p, where)
    if p.crop_pct is None:
        return fields
    size = p.size
    if "shortest_edge" in size or size["height"] == size["width"]:
        edge = size.get("shortest_edge") or size["height"]
        fields.pop("resize_to", None)
        fields["shortest_edge"] = int(edge / p.crop_pct)
    else:
        fields["resize_to"] = (int(size["height"] / p.crop_pct), int(size["width"] / p.crop_pct))
    return fields


def _mobilevit(p: Any, where: str) -> dict[str, Any]:
    """MobileViT: no normalization; channels flipped to BGR."""
    return {**_standard(p, where), "channel_order": "BGR" if p.do_flip_channel_order else "RGB",
            "do_normalize": False}


def _efficientnet(p: Any, where: str) -> dict[str, Any]:
    """EfficientNet: optional -1 offset after rescaling; include_top divides by std once more."""
    fields = _standard(p, where)
    fields["rescale_offset"] = bool(p.rescale_offset)
    if p.include_top:
        fields["extra_std"] = _triple(p.image_std)
    return fields


def _textnet(p: Any, where: str) -> dict[str, Any]:
    """TextNet: both resized sides are rounded up to a multiple of ``size_divisor`` (32), so a
    ``{height, width}`` size (an input_size) of 40x48 gives 64x64 inputs. Its default, a
    shortest-edge size without a crop, gives varying shapes and is refused as for any class."""
    fields = _standard(p, where)
    if "resize_to" in fields:
        h, w = (-(-side // p.size_divisor) * p.size_divisor for side in fields["resize_to"])
        fields["resize_to"] = (h, w)
        if not fields.get("do_center_crop"):
            fields["height"], fields["width"] = h, w
    return fields


PROCESSOR_RULES: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "ConvNextImageProcessor": _convnext,
    "LevitImageProcessor": _levit,
    "PoolFormerImageProcessor": _poolformer,
    "MobileViTImageProcessor": _mobilevit,
    "EfficientNetImageProcessor": _efficientnet,
    "TextNetImageProcessor": _textnet,
    # The rest (ViT, DeiT, BEiT, Bit/DINOv2, MobileNetV1/V2, ...) follow _standard; the parity
    # check below refuses any class for which that is not true.
}


def _triple(value: Any) -> tuple[float, ...]:
    return (float(value),) * 3 if isinstance(value, (int, float)) else tuple(float(v) for v in value)


def from_processor(p: Any, *, where: str = "image processor") -> Preprocessing:
    """The steps of transformers image processor ``p`` (not checked: see ``check_parity``)."""
    name = type(p).__name__.removesuffix("Fast")
    fields = PROCESSOR_RULES.get(name, _standard)(p, where)
    base = {
        "resample": int(getattr(p, "resample", 2)),
        "do_resize": bool(getattr(p, "do_resize", True)),
        "do_rescale": bool(getattr(p, "do_rescale", True)),
        "rescale_factor": float(getattr(p, "rescale_factor", 1 / 255)),
        "do_normalize": bool(getattr(p, "do_normalize", False)),
        "image_mean": _triple(getattr(p, "image_mean", None) or (0.0, 0.0, 0.0)),
        "image_std": _triple(getattr(p, "image_std", None) or (1.0, 1.0, 1.0)),
        "processor": name,
    }
    return Preprocessing(**{**base, **fields})


def probe_images() -> list[Image.Image]:
    """Two deterministic non-square RGB images (portrait, landscape) with detail at every scale."""
    rng = np.random.default_rng(0)
    images = []
    for h, w in ((331, 229), (229, 331)):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 7) % 256], axis=-1)
        noise = rng.integers(-40, 40, (h, w, 3))
        images.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB"))
    return images


def check_parity(pre: Preprocessing, processor: Any, *, where: str) -> float:
    """Largest difference between ``pre`` and ``processor`` on ``probe_images()``; raise above tolerance."""
    worst = 0.0
    for image in probe_images():
        ours = pre(image)
        theirs = np.asarray(processor(images=image, return_tensors="np")["pixel_values"][0], dtype=np.float32)
        if ours.shape != theirs.shape:
            raise PreprocessingError(f"{where}: {pre.processor} gives {theirs.shape} where edgeport's reading gives "
                                     f"{ours.shape}; this processor's settings are not supported yet")
        worst = max(worst, float(np.abs(ours - theirs).max()))
    if worst > PARITY_TOLERANCE:
        raise PreprocessingError(
            f"{where}: edgeport's reading of {pre.processor} differs from transformers' own output by {worst:.3g} "
            f"(tolerance {PARITY_TOLERANCE}); this processor is not supported yet (classes with their own rules: "
            f"{', '.join(PROCESSOR_RULES)}; others must resize and centre-crop as ViTImageProcessor does)"
        )
    return worst

