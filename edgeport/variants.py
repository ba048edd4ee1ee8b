"""The variants edgeport can produce: name -> runtime, precision, file and converter.

The registry is the one place that says which converter makes which artifact; add a
variant here and it can be named in the config.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ExportContext:
    """What a converter step needs to know about the model being exported."""

    source: str
    revision: str | None
    out_dir: Path
    work_dir: Path
    sample_images: Sequence[Path]  # real images for onnx2tf's own sample
    opset: int
    variants: Sequence[str] = ()  # every variant of this export
    calibration_nchw: np.ndarray | None = None  # preprocessed, for ONNX static int8
    calibration_nhwc01: np.ndarray | None = None  # resized, scaled to [0, 1], for onnx2tf -oiqt
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)

    @property
    def onnx_fp32(self) -> Path:
        return self.out_dir / VARIANTS["onnx-fp32"].filename

    def require_calibration(self) -> np.ndarray:
        if self.calibration_nchw is None or len(self.calibration_nchw) == 0:
            raise ValueError("this variant needs calibration images: set the model's 'calibration' folder")
        return self.calibration_nchw


# What a converter returns: settings/ops to record in the manifest, or None.
Converter = Callable[[ExportContext, Path], "dict[str, Any] | None"]


@dataclass(frozen=True)
class VariantSpec:
    name: str
    runtime: str
    precision: str  # budget group: fp32, fp16, int8
    filename: str  # relative to the model's output folder
    requires: str | None  # variant whose artifact this one is converted from
    convert: Converter
    description: str
    recipe: str = "1"  # bump when the converter's output changes: part of the reuse key


TF_INT8 = {"tflite-int8-dynamic", "tflite-int8", "tflite-int8-io"}
# Variants taken from the one shared onnx2tf TensorFlow-backend run (the step SHARED_TF_STEP).
TF_BACKEND = {"savedmodel-fp32", "tflite-fp16"} | TF_INT8
SHARED_TF_STEP = "onnx2tf-tf-backend"


def _tf_outputs(ctx: ExportContext) -> Path:
    """The shared onnx2tf TensorFlow-backend run (with int8 files when an int8 variant is wanted)."""
    from converters.tensorflow_run import CalibrationData, tensorflow_outputs

    calibration = None
    if TF_INT8 & set(ctx.variants):
        if ctx.calibration_nhwc01 is None or len(ctx.calibration_nhwc01) == 0:
            raise ValueError("int8 TFLite variants need calibration images: set the model's 'calibration' folder")
        calibration = CalibrationData(ctx.calibration_nhwc01, ctx.mean, ctx.std)
    return tensorflow_outputs(ctx.onnx_fp32, ctx.work_dir / "tensorflow", sample_images=ctx.sample_images,
                              calibration=calibration)


def _onnx_fp32(ctx: ExportContext, out: Path) -> None:
    from converters.onnx_export import export_onnx

    export_onnx(ctx.source, out, revision=ctx.revision, opset=ctx.opset)


def _onnx_fp16(ctx: ExportContext, out: Path) -> None:
    from converters.onnx_fp16 import convert_onnx_fp16

    convert_onnx_fp16(ctx.onnx_fp32, out)


def _onnx_int8_dynamic(ctx: ExportContext, out: Path) -> dict:
    from converters.onnx_int8_dynamic import convert_onnx_int8_dynamic

    return convert_onnx_int8_dynamic(ctx.onnx_fp32, out)[1]


def _onnx_int8_static(ctx: ExportContext, out: Path) -> dict:
    from converters.onnx_int8_static import convert_onnx_int8_static

    return convert_onnx_int8_static(ctx.onnx_fp32, out, ctx.require_calibration())[1]


def _savedmodel_fp32(ctx: ExportContext, out: Path) -> None:
    from converters.savedmodel import copy_savedmodel

    copy_savedmodel(_tf_outputs(ctx), out)


def _tflite_fp32(ctx: ExportContext, out: Path) -> dict:
    from converters.tflite_fp32 import convert_tflite_fp32

    return convert_tflite_fp32(ctx.onnx_fp32, out, sample_images=ctx.sample_images,
                               work_dir=ctx.work_dir / "tflite-fp32")


def _tflite_fp16(ctx: ExportContext, out: Path) -> dict:
    from converters.tflite_fp16 import copy_tflite_fp16

    return copy_tflite_fp16(_tf_outputs(ctx), out)


def _tflite_int8_dynamic(ctx: ExportContext, out: Path) -> dict:
    from converters.tflite_int8_dynamic import copy_tflite_int8_dynamic

    return copy_tflite_int8_dynamic(_tf_outputs(ctx), out)


def _tflite_int8(ctx: ExportContext, out: Path) -> dict:
    from converters.tflite_int8 import copy_tflite_int8

    return copy_tflite_int8(_tf_outputs(ctx), out)


def _tflite_int8_io(ctx: ExportContext, out: Path) -> dict:
    from converters.tflite_int8 import copy_tflite_int8

    return copy_tflite_int8(_tf_outputs(ctx), out, int8_io=True)


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in [
        VariantSpec("onnx-fp32", "onnxruntime", "fp32", "model.onnx", None, _onnx_fp32,
                    "ONNX fp32 from optimum's exporter, dynamic batch"),
        VariantSpec("onnx-fp16", "onnxruntime", "fp16", "model_fp16.onnx", "onnx-fp32", _onnx_fp16,
                    "ONNX fp16 weights and compute, float32 I/O (onnxruntime float16 converter)"),
        VariantSpec("onnx-int8-dynamic", "onnxruntime", "int8", "model_int8_dynamic.onnx", "onnx-fp32",
                    _onnx_int8_dynamic, "ONNX dynamic int8 on MatMul/Gemm (patch Conv stays float)"),
        VariantSpec("onnx-int8-static", "onnxruntime", "int8", "model_int8_static.onnx", "onnx-fp32",
                    _onnx_int8_static, "ONNX static int8 QDQ, per-channel, calibrated; LayerNorm/GELU/Softmax/Add, "
                    "patch embedding, first layer and head float", recipe="2"),
        VariantSpec("savedmodel-fp32", "savedmodel", "fp32", "savedmodel", "onnx-fp32", _savedmodel_fp32,
                    "TensorFlow SavedModel fp32 (onnx2tf), NHWC, batch 1"),
        VariantSpec("tflite-fp32", "tflite", "fp32", "model_fp32.tflite", "onnx-fp32", _tflite_fp32,
                    "TFLite fp32 (onnx2tf flatbuffer_direct), NHWC, batch 1, builtin ops"),
        VariantSpec("tflite-fp16", "tflite", "fp16", "model_fp16.tflite", "onnx-fp32", _tflite_fp16,
                    "TFLite fp16 weights (onnx2tf TF converter)"),
        VariantSpec("tflite-int8-dynamic", "tflite", "int8", "model_int8_dynamic.tflite", "onnx-fp32",
                    _tflite_int8_dynamic, "TFLite dynamic-range int8 weights"),
        VariantSpec("tflite-int8", "tflite", "int8", "model_int8.tflite", "onnx-fp32", _tflite_int8,
                    "TFLite full-integer int8, float32 I/O, calibrated"),
        VariantSpec("tflite-int8-io", "tflite", "int8", "model_int8_io.tflite", "onnx-fp32", _tflite_int8_io,
                    "TFLite full-integer int8 with int8 input/output (camera pipelines)"),
    ]
}

DEFAULT_VARIANTS = list(VARIANTS)


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


def _shared_tf_step(ctx: ExportContext) -> dict:
    from converters.tensorflow_run import tflite_file

    out = _tf_outputs(ctx)
    return {"outputs": sorted(p.name for p in out.glob("*.tflite") if "int16" not in p.name),
            "fp32_tflite_bytes": tflite_file(out, "fp32").stat().st_size}


def _variant_step(name: str) -> Callable[[ExportContext], "dict[str, Any] | None"]:
    def step(ctx: ExportContext) -> "dict[str, Any] | None":
        spec = VARIANTS[name]  # looked up when run, so the registry stays the one source
        return spec.convert(ctx, ctx.out_dir / spec.filename)

    return step


# Every step `edgeport.stage` can run in its own process: one per variant, plus the shared
# onnx2tf TensorFlow run that several variants copy their files from.
STEPS: dict[str, Callable[[ExportContext], "dict[str, Any] | None"]] = {
    SHARED_TF_STEP: _shared_tf_step,
    **{name: _variant_step(name) for name in VARIANTS},
}
