"""PyTorch (Hugging Face) -> Core ML ``.mlpackage`` (ML program), for iOS and macOS apps.

coremltools converts on Linux but cannot run a model there (prediction is macOS-only), so a
Core ML file made here is checked, not validated: ``check_mlpackage`` loads its spec and
confirms the image input, the classifier outputs and the labels. What can be checked
numerically here is checked before conversion: the traced module (normalization inside,
softmax at the end) must give the PyTorch model's probabilities on real images.

The file takes an image, as iOS apps hand one over (``CVPixelBuffer``, or through Vision):
``ct.ImageType`` gives the model raw 0-255 pixels in the processor's channel order, and the
processor's rescale and normalization (per-channel scale and offset, derived from
``preprocessor_config.json``) are the model's first op, so an app does not normalize.
Resizing and centre cropping to the input size stay the app's (Vision's
``imageCropAndScaleOption``); the mobile card spells them out. ``ct.ClassifierConfig`` makes
it a classifier: ``classLabel`` (the top label) and ``classLabel_probs`` (label ->
softmax probability).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.converters.atomic import atomic_path
from edgeport.converters.quiet import quiet
from edgeport.converters.torch_logits import logits_module

# The deployment target the ML program needs: iOS 16 / macOS 13 run fp16 and fp32 ML programs.
DEPLOYMENT_TARGET = "iOS16"
INPUT_NAME = "image"
LABEL_OUTPUT = "classLabel"
PROBS_OUTPUT = "classLabel_probs"
# The traced module's largest difference from the PyTorch model's probabilities that the
# pre-conversion check accepts: the same float32 ops, with normalization folded into one
# multiply-add per channel.
TRACE_TOLERANCE = 1e-5


def pixel_affine(pre: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per-channel (scale, offset), in RGB order, with ``scale * pixel + offset`` = the
    processor's output for 0-255 RGB pixels (``validation.preprocess`` steps: rescale,
    optional -1 offset, normalize, optional extra std; a BGR model's flip comes after)."""
    channels = len(pre["image_mean"])
    scale = np.full(channels, pre["rescale_factor"] if pre["do_rescale"] else 1.0)
    offset = np.full(channels, -1.0 if pre["do_rescale"] and pre.get("rescale_offset") else 0.0)
    if pre["do_normalize"]:
        mean, std = np.asarray(pre["image_mean"], float), np.asarray(pre["image_std"], float)
        scale, offset = scale / std, (offset - mean) / std
    if pre.get("extra_std") is not None:
        extra = np.asarray(pre["extra_std"], float)
        scale, offset = scale / extra, offset / extra
    return [float(v) for v in scale], [float(v) for v in offset]


def input_affine(pre: dict[str, Any]) -> tuple[list[float], list[float]]:
    """``pixel_affine`` in the order the image input's channels arrive in (Core ML's BGR layout
    for a BGR model): the model's first op, ``scale * pixel + offset``, gives the processor's output."""
    scale, offset = pixel_affine(pre)
    if pre.get("channel_order", "RGB") == "BGR":
        return scale[::-1], offset[::-1]
    return scale, offset


def export_coreml(source: str, out_path: str | Path, *, preprocessing: dict[str, Any], labels: list[str],
                  precision: str = "fp32", revision: str | None = None,
                  check_pixels: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``source`` as a Core ML classifier ``.mlpackage`` (a folder) at ``out_path``.

    ``preprocessing``: ``Preprocessing.to_dict()`` of the model; ``precision``: "fp32" or
    "fp16" (the ML program's compute precision); ``check_pixels``: real images, resized and
    cropped to the input size, as 0-255 RGB (N, H, W, 3), on which the traced module is
    compared with the PyTorch model before converting. Returns the manifest's settings,
    with what ``check_mlpackage`` found.
    """
    import coremltools as ct
    import torch

    height, width = preprocessing["height"], preprocessing["width"]
    bgr = preprocessing.get("channel_order", "RGB") == "BGR"
    scale, offset = pixel_affine(preprocessing)
    model_scale, model_offset = input_affine(preprocessing)
    inner = logits_module(source, revision, attn_implementation="eager")  # TorchScript traces eager attention
    module = _image_classifier(inner, model_scale, model_offset)
    example = torch.full((1, len(scale), height, width), 128.0)
    with quiet("", "coremltools"), torch.no_grad():
        traced = torch.jit.trace(module, example)
        trace_diff = _trace_difference(traced, inner, scale, offset, bgr, check_pixels)
        mlmodel = ct.convert(
            traced, inputs=[ct.ImageType(name=INPUT_NAME, shape=tuple(example.shape),
                                         color_layout=ct.colorlayout.BGR if bgr else ct.colorlayout.RGB)],
            classifier_config=ct.ClassifierConfig(list(labels)), convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET))
        mlmodel.short_description = f"image classifier ({precision}), made by edgeport"
        with atomic_path(out_path) as tmp:  # tmp is named like out_path: coremltools wants .mlpackage
            mlmodel.save(str(tmp))
            found = check_mlpackage(Path(tmp), labels, (height, width))
    return {"format": "mlprogram", "precision": precision, "deployment_target": DEPLOYMENT_TARGET,
            "input": {"name": INPUT_NAME, "kind": "image", "height": height, "width": width,
                      "color_layout": "BGR" if bgr else "RGB", "pixel_range": "0-255",
                      "normalization": "inside the model: per-channel scale * pixel + offset",
                      "scale": model_scale, "offset": model_offset},
            "outputs": {"label": LABEL_OUTPUT, "probabilities": PROBS_OUTPUT, "scores": "softmax"},
            "traced_vs_pytorch_max_abs_diff": trace_diff, "check": found,
            "validated": "not on this machine: Core ML runs on macOS"}


def check_mlpackage(path: Path, labels: list[str], size: tuple[int, int]) -> dict[str, Any]:
    """Load ``path``'s spec (no prediction) and confirm input, outputs and labels; raise ValueError if not."""
    import coremltools as ct

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    desc = spec.description
    problems = []
    inputs = {i.name: i for i in desc.input}
    image = inputs.get(INPUT_NAME)
    if image is None or image.type.WhichOneof("Type") != "imageType":
        problems.append(f"no image input named {INPUT_NAME!r} (inputs: {sorted(inputs)})")
    elif (image.type.imageType.height, image.type.imageType.width) != tuple(size):
        problems.append(f"input is {image.type.imageType.height}x{image.type.imageType.width}, "
                        f"expected {size[0]}x{size[1]}")
    outputs = {o.name for o in desc.output}
    if {LABEL_OUTPUT, PROBS_OUTPUT} - outputs:
        problems.append(f"outputs {sorted(outputs)}, expected {LABEL_OUTPUT} and {PROBS_OUTPUT}")
    if desc.predictedFeatureName != LABEL_OUTPUT:
        problems.append(f"not a classifier (predictedFeatureName {desc.predictedFeatureName!r})")
    stored = class_labels(spec)
    if stored != list(labels):
        problems.append(f"labels {stored}, expected {list(labels)}")
    if problems:
        raise ValueError(f"{path.name}: " + "; ".join(problems))
    return {"spec": "loads", "type": spec.WhichOneof("Type"), "input": f"{INPUT_NAME}: image {size[0]}x{size[1]}",
            "outputs": [LABEL_OUTPUT, PROBS_OUTPUT], "labels": len(stored),
            "specification_version": spec.specificationVersion}


def class_labels(spec) -> list[str]:
    """The classifier's labels as stored in the spec (an ML program keeps them in its ``classify`` op)."""
    for block in spec.mlProgram.functions["main"].block_specializations.values():
        for op in block.operations:
            if op.type == "classify":
                values = op.inputs["classes"].arguments[0].value.immediateValue.list.values
                return [v.immediateValue.tensor.strings.values[0] if v.immediateValue.tensor.strings.values
                        else str(v.immediateValue.tensor.ints.values[0]) for v in values]
    return []


def _trace_difference(traced, inner, scale: list[float], offset: list[float], bgr: bool,
                      pixels: np.ndarray | None) -> float | None:
    """Largest difference between the traced module's probabilities and the PyTorch model's on
    ``pixels`` (N, H, W, 3 RGB 0-255), normalized as ``validation.preprocess`` does; raise
    ValueError over ``TRACE_TOLERANCE``."""
    import torch

    if pixels is None or len(pixels) == 0:
        return None
    rgb = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32))
    normalized = rgb * torch.tensor(scale).view(1, -1, 1, 1) + torch.tensor(offset).view(1, -1, 1, 1)
    image = rgb
    if bgr:  # the processor flips after normalizing; the Core ML input arrives flipped
        normalized, image = normalized.flip(1), rgb.flip(1)
    expected = torch.softmax(inner(normalized), dim=-1)
    diff = float((traced(image) - expected).abs().max())
    if diff > TRACE_TOLERANCE:
        raise ValueError(f"the traced Core ML module differs from the PyTorch model by {diff:.2e} "
                         f"(tolerance {TRACE_TOLERANCE:g}); not converted")
    return diff


def _image_classifier(inner, scale: list[float], offset: list[float]):
    """``inner`` (pixel values -> logits) behind the pixel affine and a softmax, as a module to trace."""
    import torch

    class ImageClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(image * self.scale + self.offset), dim=-1)

    return ImageClassifier().eval()
