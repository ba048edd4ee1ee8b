"""The variants edgeport can produce: name -> runtime, precision, file and converter.

The registry is the one place that says which converter makes which artifact; add a
variant here and it can be named in the config.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportContext:
    """What a converter step needs to know about the model being exported."""

    source: str
    revision: str | None
    out_dir: Path
    work_dir: Path
    sample_images: Sequence[Path]
    opset: int

    @property
    def onnx_fp32(self) -> Path:
        return self.out_dir / VARIANTS["onnx-fp32"].filename


@dataclass(frozen=True)
class VariantSpec:
    name: str
    runtime: str
    precision: str  # budget group: fp32, fp16, int8
    filename: str  # relative to the model's output folder
    requires: str | None  # variant whose artifact this one is converted from
    convert: Callable[[ExportContext, Path], Path]
    description: str


def _onnx_fp32(ctx: ExportContext, out: Path) -> Path:
    from converters.onnx_export import export_onnx

    return export_onnx(ctx.source, out, revision=ctx.revision, opset=ctx.opset)


def _savedmodel_fp32(ctx: ExportContext, out: Path) -> Path:
    from converters.savedmodel import convert_savedmodel

    return convert_savedmodel(ctx.onnx_fp32, out, sample_images=ctx.sample_images,
                              work_dir=ctx.work_dir / "savedmodel-fp32")


def _tflite_fp32(ctx: ExportContext, out: Path) -> Path:
    from converters.tflite_fp32 import convert_tflite_fp32

    return convert_tflite_fp32(ctx.onnx_fp32, out, sample_images=ctx.sample_images,
                               work_dir=ctx.work_dir / "tflite-fp32")


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in [
        VariantSpec("onnx-fp32", "onnxruntime", "fp32", "model.onnx", None, _onnx_fp32,
                    "ONNX fp32 from optimum's exporter, dynamic batch"),
        VariantSpec("savedmodel-fp32", "savedmodel", "fp32", "savedmodel", "onnx-fp32", _savedmodel_fp32,
                    "TensorFlow SavedModel fp32 (onnx2tf), NHWC, batch 1"),
        VariantSpec("tflite-fp32", "tflite", "fp32", "model_fp32.tflite", "onnx-fp32", _tflite_fp32,
                    "TFLite fp32 (onnx2tf flatbuffer_direct), NHWC, batch 1, builtin ops"),
    ]
}

DEFAULT_VARIANTS = ["onnx-fp32", "savedmodel-fp32", "tflite-fp32"]


def resolve_variants(names: Sequence[str]) -> list[VariantSpec]:
    """Specs for ``names`` plus what they are converted from, in conversion order."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    wanted = set(names)
    for name in list(names):
        req = VARIANTS[name].requires
        while req:
            wanted.add(req)
            req = VARIANTS[req].requires
    return [spec for name, spec in VARIANTS.items() if name in wanted]
