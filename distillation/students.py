"""Edge-sized student architectures for ``edgeport distill``: named presets of transformers
image classifiers, built with the teacher's labels at the input size the user picks.

A preset is a transformers config class with its keyword arguments, nothing else: the student
is an ordinary ``AutoModelForImageClassification`` model, so export, validate, the mobile
bundle and serve treat it like any model. Every student gets a plain resize-rescale-normalize
``ViTImageProcessor`` at its input size (no crop, RGB), whatever its family: the images it is
trained on are prepared exactly that way, and it is the cheapest processor for an app to
reproduce.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class StudentError(ValueError):
    """A student preset, config file or input size that cannot be used."""


@dataclass(frozen=True)
class StudentPreset:
    name: str
    config: str  # transformers config class
    config_kwargs: dict[str, Any]
    description: str
    image_size_key: str | None = "image_size"  # the config field that holds the input size, if any


PRESETS: dict[str, StudentPreset] = {p.name: p for p in [
    StudentPreset("mobilenet_v2-0.35", "MobileNetV2Config", dict(depth_multiplier=0.35),
                  "MobileNetV2, width multiplier 0.35 (about 0.4M parameters with 2 labels)"),
    StudentPreset("mobilenet_v2-0.5", "MobileNetV2Config", dict(depth_multiplier=0.5),
                  "MobileNetV2, width multiplier 0.5 (about 0.7M)"),
    StudentPreset("mobilenet_v2-0.75", "MobileNetV2Config", dict(depth_multiplier=0.75),
                  "MobileNetV2, width multiplier 0.75 (about 1.4M)"),
    StudentPreset("mobilenet_v2-1.0", "MobileNetV2Config", dict(depth_multiplier=1.0),
                  "MobileNetV2, width multiplier 1.0 (about 2.2M)"),
    StudentPreset("mobilevit-xxs", "MobileViTConfig",
                  dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320]),
                  "MobileViT-XXS (about 1.0M)"),
    StudentPreset("mobilevit-xs", "MobileViTConfig",
                  dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
                  "MobileViT-XS (about 1.9M)"),
    StudentPreset("resnet-10-narrow", "ResNetConfig",
                  dict(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], layer_type="basic"),
                  "ResNet with one basic block per stage, 32-256 channels (about 1.2M)", image_size_key=None),
    StudentPreset("convnext-atto", "ConvNextConfig", dict(depths=[2, 2, 6, 2], hidden_sizes=[40, 80, 160, 320]),
                  "ConvNeXt-Atto (about 3.4M)", image_size_key=None),
    StudentPreset("vit-tiny", "ViTConfig",
                  dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                       patch_size=16),
                  "a DeiT-Tiny-sized ViT, patch 16 (about 5.5M)"),
    StudentPreset("resnet-18", "ResNetConfig",
                  dict(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"),
                  "ResNet-18 (about 11.2M)", image_size_key=None),
]}

# A default student has at most this share of the teacher's parameters (issue #34: "about a
# quarter or less").
DEFAULT_SHARE = 0.25


def parameters(model: Any) -> int:
    """How many parameters ``model`` has."""
    return int(sum(p.numel() for p in model.parameters()))


def student_config(student: str | Path, labels: list[str], input_size: int, *, multi_label: bool = False) -> Any:
    """The transformers config of ``student`` (a preset name, or a ``config.json`` path) with the
    teacher's ``labels`` and ``input_size``; raises StudentError naming the presets."""
    import transformers

    id2label = {i: name for i, name in enumerate(labels)}
    common = dict(id2label=id2label, label2id={name: i for i, name in id2label.items()}, num_labels=len(labels))
    if multi_label:
        common["problem_type"] = "multi_label_classification"
    path = Path(student)
    if str(student) in PRESETS:
        preset = PRESETS[str(student)]
        kwargs = dict(preset.config_kwargs, **common)
        if preset.image_size_key:
            kwargs[preset.image_size_key] = input_size
        return getattr(transformers, preset.config)(**kwargs)
    if path.suffix == ".json" or path.is_dir():
        file = path / "config.json" if path.is_dir() else path
        if not file.is_file():
            raise StudentError(f"student config {file} not found")
        try:
            config = transformers.AutoConfig.from_pretrained(str(file))
        except (ValueError, OSError, json.JSONDecodeError) as exc:
            raise StudentError(f"student config {file} cannot be read by transformers: {exc}") from None
        for key, value in common.items():
            setattr(config, key, value)
        if hasattr(config, "image_size"):
            config.image_size = input_size
        return config
    raise StudentError(f"unknown student {student!r}: use a preset ({', '.join(PRESETS)}) "
                       "or the path of a transformers config.json")


def build_student(student: str | Path, labels: list[str], input_size: int, *, seed: int = 0,
                  multi_label: bool = False) -> Any:
    """A freshly initialized student model; checks that it takes ``input_size`` x ``input_size``
    images (one forward pass of zeros) and raises StudentError with the reason if not."""
    import torch
    import transformers

    config = student_config(student, labels, input_size, multi_label=multi_label)
    torch.manual_seed(seed)
    try:
        model = transformers.AutoModelForImageClassification.from_config(config)
    except ValueError as exc:
        raise StudentError(f"student {student!r} is not an image classifier transformers can build: {exc}") from None
    model.eval()
    try:
        with torch.no_grad():
            logits = model(pixel_values=torch.zeros(1, config.num_channels if hasattr(config, "num_channels") else 3,
                                                    input_size, input_size)).logits
    except Exception as exc:  # noqa: BLE001 - any failure of the forward pass means the size does not fit
        raise StudentError(f"student {student!r} cannot take {input_size}x{input_size} images: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    if tuple(logits.shape) != (1, len(labels)):
        raise StudentError(f"student {student!r} gives logits of shape {tuple(logits.shape)}, "
                           f"not (1, {len(labels)})")
    return model


def default_student(teacher_parameters: int, labels: list[str], input_size: int) -> tuple[str, str]:
    """The largest preset with at most ``DEFAULT_SHARE`` of the teacher's parameters that takes
    ``input_size`` (the smallest preset when none is that small), and why it was chosen."""
    sizes = []
    for name in PRESETS:
        try:
            sizes.append((parameters(build_student(name, labels, input_size)), name))
        except StudentError:
            continue
    if not sizes:
        raise StudentError(f"no student preset takes {input_size}x{input_size} images; pass --input-size")
    sizes.sort()
    limit = teacher_parameters * DEFAULT_SHARE
    fitting = [s for s in sizes if s[0] <= limit]
    if fitting:
        count, name = fitting[-1]
        return name, (f"the largest preset with at most {DEFAULT_SHARE:.0%} of the teacher's "
                      f"{teacher_parameters:,} parameters ({count:,})")
    count, name = sizes[0]
    return name, (f"the smallest preset ({count:,} parameters); none has {DEFAULT_SHARE:.0%} or less of the "
                  f"teacher's {teacher_parameters:,}")


def student_processor(input_size: int, image_mean: tuple[float, ...], image_std: tuple[float, ...]) -> dict[str, Any]:
    """The student's ``preprocessor_config.json``: resize to the input size, rescale, normalize."""
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": input_size, "width": input_size},
        "resample": 2,  # bilinear, as the training images were prepared
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(image_mean),
        "image_std": list(image_std),
    }
