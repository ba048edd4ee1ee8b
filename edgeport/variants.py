"""The variants edgeport can produce: name -> runtime, precision, file and converter.

The registry is the one place that says which converter makes which artifact; add a
variant here and it can be named in the config.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.runtimes.lean_start import UNUSED_BY_CLASSIFIERS, UNUSED_BY_ORT_TOOLS


@dataclass
class ExportContext:
    """What a converter step needs to know about the model being exported."""

    source: str
    revision: str | None
    out_dir: Path
    work_dir: Path
    sample_images: Sequence[Path]  # real images for onnx2tf's own sample (empty: a generated one)
    opset: int
    calibration_nchw: np.ndarray | None = None  # preprocessed, for the calibrated int8 variants
    full_integer_activations: str = "int8"  # tflite-int8 and tflite-int8-io: "int8" or "int16" (16x8)
    input_size: Sequence[int] | None = None  # (height, width) the image processor produces
    calibration_labels: np.ndarray | None = None  # class index per calibration image, -1 where unknown
    # The int8 variants' budgets (variant name -> {"min_agreement", "max_accuracy_drop"}), which the
    # precision search meets on held-out calibration images; precision_search=False: all int8, no search.
    int8_targets: dict[str, dict[str, float | None]] = field(default_factory=dict)
    precision_search: bool = True

    @property
    def onnx_fp32(self) -> Path:
        return self.out_dir / VARIANTS["onnx-fp32"].filename

    def require_calibration(self) -> np.ndarray:
        if self.calibration_nchw is None or len(self.calibration_nchw) == 0:
            raise ValueError("this variant is calibrated on real images: set calibration = \"DIR\" on the model "
                             "in the config, or pass --calibration DIR")
        return self.calibration_nchw

    def calibration_split(self, variant: str, reference: "Callable[[np.ndarray], np.ndarray]"):
        """(images to calibrate on, Holdout, Target) for ``variant``'s precision search.

        ``reference`` runs the float file the variant is quantized from (NCHW images in, logits
        out). Without the search, every image calibrates and the holdout is None.
        """
        from edgeport.converters.precision_search import Holdout, Target, split_holdout

        images = self.require_calibration()
        if not self.precision_search:
            return images, None, None
        from edgeport.model_source import is_multi_label

        calib, held = split_holdout(len(images))
        multi_label = is_multi_label(self.out_dir / "config.json")
        labels = None
        if self.calibration_labels is not None and (self.calibration_labels[held] >= 0).all() and not multi_label:
            labels = self.calibration_labels[held]
        holdout = Holdout(images[held], reference(images[held]), labels, multi_label=multi_label)
        return images[calib], holdout, Target.from_dict(self.int8_targets.get(variant))


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
    calibrated: bool = False  # quantized with the calibration images (needs calibration = "DIR")
    searched: bool = False  # its precision search aims at the variant's budget (part of the reuse key)
    default: bool = True  # in the default variant list; False: opt-in, named in the config or --variants
    # installed packages the step's libraries import at start-up without using them here, hidden
    # from its own process (runtimes.lean_start); a wrong entry fails the step with ImportError
    unused_packages: tuple[str, ...] = ()


# TFLite variants quantized from the tflite-fp32 artifact with calibration images.
TFLITE_CALIBRATED = {"tflite-int8", "tflite-int8-io"}
# Their activation width, chosen per model (converters.tflite_int8 says what each costs).
FULL_INTEGER_ACTIVATIONS = ("int8", "int16")


def _onnx_fp32(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.onnx_export import export_onnx

    return export_onnx(ctx.source, out, revision=ctx.revision, opset=ctx.opset,
                       input_size=tuple(ctx.input_size) if ctx.input_size else None)


def _onnx_fp16(ctx: ExportContext, out: Path) -> None:
    from edgeport.converters.onnx_fp16 import convert_onnx_fp16

    convert_onnx_fp16(ctx.onnx_fp32, out)


def _onnx_int8_dynamic(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.onnx_int8_dynamic import convert_onnx_int8_dynamic

    return convert_onnx_int8_dynamic(ctx.onnx_fp32, out)[1]


def _onnx_int8_static(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.onnx_int8_static import convert_onnx_int8_static, run_onnx

    calibration, holdout, target = ctx.calibration_split("onnx-int8-static", lambda x: run_onnx(ctx.onnx_fp32, x))
    return convert_onnx_int8_static(ctx.onnx_fp32, out, calibration, holdout=holdout, target=target,
                                    log=lambda m: print(f"[onnx-int8-static] {m.strip()}", flush=True))[1]


def _savedmodel_fp32(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.savedmodel import convert_savedmodel

    return convert_savedmodel(ctx.onnx_fp32, out, sample_images=ctx.sample_images,
                              work_dir=ctx.work_dir / "savedmodel")


def _tflite_fp32(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.tflite_fp32 import convert_tflite_fp32

    return convert_tflite_fp32(ctx.onnx_fp32, out, sample_images=ctx.sample_images,
                               work_dir=ctx.work_dir / "tflite-fp32")


def _tflite_fp32_artifact(ctx: ExportContext) -> Path:
    return ctx.out_dir / VARIANTS["tflite-fp32"].filename


def _tflite_fp16(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.tflite_fp16 import convert_tflite_fp16

    return convert_tflite_fp16(_tflite_fp32_artifact(ctx), out)


def _tflite_int8_dynamic(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.tflite_int8_dynamic import convert_tflite_int8_dynamic

    return convert_tflite_int8_dynamic(_tflite_fp32_artifact(ctx), out)


def _full_integer(ctx: ExportContext, out: Path, *, int8_io: bool) -> dict:
    from edgeport.converters.tflite_int8 import FullIntegerHint, convert_tflite_int8, run_tflite

    name = "tflite-int8-io" if int8_io else "tflite-int8"
    fp32 = _tflite_fp32_artifact(ctx)
    if ctx.full_integer_activations == "int8":
        calibration, holdout, target = ctx.calibration_split(name, lambda x: run_tflite(fp32, x))
    else:  # every activation int16 by the config's choice: nothing for the search to raise
        calibration, holdout, target = ctx.require_calibration(), None, None
    nhwc = np.ascontiguousarray(calibration.transpose(0, 2, 3, 1))
    # One calibration cache for both full-integer variants: the second reuses the first's statistics.
    cache = ctx.work_dir / "tflite-int8-calibration"
    hint = FullIntegerHint(cache, fp32, nhwc)
    start = hint.read() if int8_io and holdout is not None else []
    settings = convert_tflite_int8(fp32, out, nhwc, int8_io=int8_io, activations=ctx.full_integer_activations,
                                   calibration_cache=cache, holdout=holdout, target=target,
                                   log=lambda m: print(f"[{name}] {m.strip()}", flush=True),
                                   start_kinds=start, start_from="tflite-int8's precision search" if start else None)
    if not int8_io:
        hint.write(settings.get("precision_search"))
    return settings


def _tflite_int8(ctx: ExportContext, out: Path) -> dict:
    return _full_integer(ctx, out, int8_io=False)


def _tflite_int8_io(ctx: ExportContext, out: Path) -> dict:
    return _full_integer(ctx, out, int8_io=True)


def _executorch(ctx: ExportContext, out: Path, *, int8: bool) -> dict:
    from edgeport.converters.executorch_export import export_executorch

    if not int8:
        return export_executorch(ctx.source, out, revision=ctx.revision, input_size=tuple(ctx.input_size))
    calibration, holdout, target = ctx.calibration_split("executorch-int8", lambda x: _torch_logits(ctx, x))
    return export_executorch(ctx.source, out, revision=ctx.revision, input_size=tuple(ctx.input_size),
                             calibration=calibration, holdout=holdout, target=target,
                             log=lambda m: print(f"[executorch-int8] {m.strip()}", flush=True))


def _torch_logits(ctx: ExportContext, images: np.ndarray) -> np.ndarray:
    """PyTorch's logits (the float model executorch-int8 is quantized from), 16 images at a time."""
    import torch

    from edgeport.converters.torch_logits import logits_module

    module = logits_module(ctx.source, ctx.revision, attn_implementation="eager")
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(np.ascontiguousarray(images[i:i + 16], np.float32))).numpy()
                               for i in range(0, len(images), 16)])


def _executorch_fp32(ctx: ExportContext, out: Path) -> dict:
    return _executorch(ctx, out, int8=False)


def _executorch_int8(ctx: ExportContext, out: Path) -> dict:
    return _executorch(ctx, out, int8=True)


def _openvino_fp32(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.openvino_ir import convert_openvino_fp32

    return convert_openvino_fp32(ctx.onnx_fp32, out)


def _openvino_int8(ctx: ExportContext, out: Path) -> dict:
    from edgeport.converters.openvino_ir import convert_openvino_int8, run_openvino

    fp32 = ctx.out_dir / VARIANTS["openvino-fp32"].filename
    calibration, holdout, target = ctx.calibration_split("openvino-int8", lambda x: run_openvino(fp32, x))
    return convert_openvino_int8(fp32, out, calibration, holdout=holdout, target=target,
                                 log=lambda m: print(f"[openvino-int8] {m.strip()}", flush=True))


def _coreml(ctx: ExportContext, out: Path, *, precision: str) -> dict:
    from PIL import Image

    from edgeport.converters.coreml_export import export_coreml
    from edgeport.model_source import read_labels
    from edgeport.validation.preprocess import Preprocessing

    pre = Preprocessing.from_file(ctx.out_dir / "preprocessor_config.json")
    pixels = np.stack([pre.pixels(Image.open(p)) for p in ctx.sample_images]) if ctx.sample_images else None
    return export_coreml(ctx.source, out, revision=ctx.revision, preprocessing=pre.to_dict(),
                         labels=read_labels(ctx.out_dir / "config.json"), precision=precision, check_pixels=pixels)


def _coreml_fp32(ctx: ExportContext, out: Path) -> dict:
    return _coreml(ctx, out, precision="fp32")


def _coreml_fp16(ctx: ExportContext, out: Path) -> dict:
    return _coreml(ctx, out, precision="fp16")


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in [
        VariantSpec("onnx-fp32", "onnxruntime", "fp32", "model.onnx", None, _onnx_fp32,
                    "ONNX fp32 from optimum's exporter, dynamic batch", recipe="2", unused_packages=UNUSED_BY_CLASSIFIERS),
        VariantSpec("onnx-fp16", "onnxruntime", "fp16", "model_fp16.onnx", "onnx-fp32", _onnx_fp16,
                    "ONNX fp16 weights and compute, float32 I/O (onnxruntime float16 converter)"),
        VariantSpec("onnx-int8-dynamic", "onnxruntime", "int8", "model_int8_dynamic.onnx", "onnx-fp32",
                    _onnx_int8_dynamic, "ONNX dynamic int8 on MatMul/Gemm (patch Conv stays float)",
                    unused_packages=UNUSED_BY_ORT_TOOLS),
        VariantSpec("onnx-int8-static", "onnxruntime", "int8", "model_int8_static.onnx", "onnx-fp32",
                    _onnx_int8_static, "ONNX static int8 QDQ, per-channel, calibrated; the precision search keeps the "
                    "layers the budget needs float", recipe="5", calibrated=True, searched=True,
                    unused_packages=UNUSED_BY_ORT_TOOLS),
        VariantSpec("savedmodel-fp32", "savedmodel", "fp32", "savedmodel", "onnx-fp32", _savedmodel_fp32,
                    "TensorFlow SavedModel fp32 (onnx2tf TF backend, SavedModel only), NHWC, batch 1", recipe="4",
                    unused_packages=UNUSED_BY_ORT_TOOLS),
        VariantSpec("tflite-fp32", "tflite", "fp32", "model_fp32.tflite", "onnx-fp32", _tflite_fp32,
                    "TFLite fp32 (onnx2tf flatbuffer_direct, Linear layers as FULLY_CONNECTED), NHWC, batch 1",
                    recipe="5"),
        VariantSpec("tflite-fp16", "tflite", "fp16", "model_fp16.tflite", "tflite-fp32", _tflite_fp16,
                    "TFLite fp16 weights (ai-edge-quantizer float casting)", recipe="2"),
        VariantSpec("tflite-int8-dynamic", "tflite", "int8", "model_int8_dynamic.tflite", "tflite-fp32",
                    _tflite_int8_dynamic, "TFLite dynamic-range int8 weights, Linear biases inside FULLY_CONNECTED "
                    "(ai-edge-quantizer)", recipe="3"),
        VariantSpec("tflite-int8", "tflite", "int8", "model_int8.tflite", "tflite-fp32", _tflite_int8,
                    "TFLite full-integer, int8 weights, float32 I/O, calibrated (ai-edge-quantizer); activations "
                    "int8, op kinds the budget needs int16 (precision search), or per model all int16", recipe="6",
                    calibrated=True, searched=True),
        VariantSpec("tflite-int8-io", "tflite", "int8", "model_int8_io.tflite", "tflite-fp32", _tflite_int8_io,
                    "TFLite full-integer with int8 input/output (camera pipelines), calibrated (ai-edge-quantizer)",
                    recipe="6", calibrated=True, searched=True),
        VariantSpec("executorch-fp32", "executorch", "fp32", "model_fp32.pte", None, _executorch_fp32,
                    "ExecuTorch program fp32, XNNPACK delegate (torch.export), batch 1", default=False),
        VariantSpec("executorch-int8", "executorch", "int8", "model_int8.pte", None, _executorch_int8,
                    "ExecuTorch program int8, XNNPACK delegate, PT2E quantization calibrated (XNNPACKQuantizer); the "
                    "precision search keeps the nodes the budget needs float", recipe="2", calibrated=True,
                    searched=True, default=False),
        VariantSpec("openvino-fp32", "openvino", "fp32", "openvino_fp32", "onnx-fp32", _openvino_fp32,
                    "OpenVINO IR fp32 (openvino.convert_model on the ONNX file), dynamic batch", default=False),
        VariantSpec("openvino-int8", "openvino", "int8", "openvino_int8", "openvino-fp32", _openvino_int8,
                    "OpenVINO IR int8, NNCF post-training quantization calibrated (transformer scheme on "
                    "graphs with attention); NNCF's accuracy control keeps float what the budget needs",
                    recipe="3", calibrated=True, searched=True, default=False),
        VariantSpec("coreml-fp32", "coreml", "fp32", "model_fp32.mlpackage", None, _coreml_fp32,
                    "Core ML ML program fp32 (coremltools), image input with the normalization inside, "
                    "classifier outputs; checked, not run (Core ML runs on macOS)", default=False),
        VariantSpec("coreml-fp16", "coreml", "fp16", "model_fp16.mlpackage", None, _coreml_fp16,
                    "Core ML ML program fp16 (coremltools; the Neural Engine computes fp16); checked, not run "
                    "(Core ML runs on macOS)", default=False),
    ]
}

# Opt-in variants stay out: `make export-all` on the bundled models must stay within its time.
DEFAULT_VARIANTS = [name for name, spec in VARIANTS.items() if spec.default]


def default_variants() -> list[str]:
    """The default variants this installation can make: those whose backend (pip extra) is installed."""
    from edgeport.backends import cannot_make

    return [name for name in DEFAULT_VARIANTS if cannot_make(VARIANTS[name].runtime) is None]
# Variants quantized with the calibration images, and those of them the precision search serves.
CALIBRATED = {name for name, spec in VARIANTS.items() if spec.calibrated}
SEARCHED = {name for name, spec in VARIANTS.items() if spec.searched}


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


def _variant_step(name: str) -> Callable[[ExportContext], "dict[str, Any] | None"]:
    def step(ctx: ExportContext) -> "dict[str, Any] | None":
        spec = VARIANTS[name]  # looked up when run, so the registry stays the one source
        return spec.convert(ctx, ctx.out_dir / spec.filename)

    return step


# Every step `edgeport.stage` can run in its own process: one per variant.
STEPS: dict[str, Callable[[ExportContext], "dict[str, Any] | None"]] = {name: _variant_step(name) for name in VARIANTS}
