"""ONNX -> OpenVINO IR (``model.xml`` + ``model.bin``), fp32 or int8 by NNCF.

fp32: ``openvino.convert_model`` on the ONNX fp32 file, saved without OpenVINO's default
fp16 weight compression (``compress_to_fp16=False``), so the IR holds the same weights.

int8: NNCF post-training quantization of that IR on the calibration images (the same
images as the other static int8 files): int8 weights per channel and int8 activations
where the CPU plugin has int8 kernels. For graphs with attention (a ``Softmax`` in the
graph or a fused ``ScaledDotProductAttention``, whatever the architecture is called) NNCF's transformer model type is used: it keeps
the operators its authors measured as int8-sensitive (LayerNorm inputs, Softmax, the
residual Adds) float and applies SmoothQuant to the MatMuls; convolutional graphs get the
default scheme. The model type is derived from the graph, not set per model.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.converters.atomic import atomic_path
from edgeport.converters.precision_search import Holdout, Target
from edgeport.converters.quiet import quiet

IR_NAME = "model.xml"
# OpenVINO's operator types that mark attention: its frontends fuse softmax(QK^T)V into
# ScaledDotProductAttention; a graph they did not fuse keeps a (Soft)Max.
ATTENTION_OPS = {"ScaledDotProductAttention", "Softmax", "SoftMax"}


def convert_openvino_fp32(onnx_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the OpenVINO IR of ``onnx_path`` into the folder ``out_dir`` (fp32 weights)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    with atomic_path(out_dir, directory=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(tmp / IR_NAME), compress_to_fp16=False)
    return {"precision": "fp32", "ir": IR_NAME, "openvino": ov.get_version().split("-")[0]}


def convert_openvino_int8(fp32_dir: str | Path, out_dir: str | Path, calibration: np.ndarray, *,
                          holdout: Holdout | None = None, target: Target | None = None,
                          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Quantize the IR in ``fp32_dir`` with NNCF on ``calibration`` (NCHW float32) into ``out_dir``.

    With a ``holdout`` (held-out calibration images and the fp32 file's logits on them) and a
    ``target``, NNCF's accuracy control (``quantize_with_accuracy_control``) returns the
    operations that cost the most agreement to float until the held-out agreement meets the
    target (with the precision search's margin: ``Holdout.allowed_disagreements``); the
    result is then judged like every searched file (``Holdout.judge``, accuracy drop too).
    """
    import nncf
    import openvino as ov

    start = time.perf_counter()
    model = ov.Core().read_model(str(Path(fp32_dir) / IR_NAME))
    has_attention = any(op.get_type_name() in ATTENTION_OPS for op in model.get_ops())
    model_type = nncf.ModelType.TRANSFORMER if has_attention else None
    dataset = nncf.Dataset([np.ascontiguousarray(x[None], dtype=np.float32) for x in calibration])
    options = dict(subset_size=len(calibration), model_type=model_type, preset=nncf.QuantizationPreset.MIXED)
    search: dict[str, Any] | None = None
    if holdout is None or target is None:
        with quiet("nncf"):  # NNCF logs a progress bar and a line per statistic
            quantized = nncf.quantize(model, dataset, **options)
    else:
        quantized, search = _with_accuracy_control(model, dataset, options, holdout, target, log)
    with atomic_path(out_dir, directory=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, str(tmp / IR_NAME), compress_to_fp16=False)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    settings = {"precision": "int8", "ir": IR_NAME, "quantizer": f"nncf {nncf.__version__}",
                "model_type": "transformer" if has_attention else "default",
                "preset": "mixed (symmetric weights, asymmetric activations)",
                "calibration_images": int(len(calibration)), "fake_quantize_ops": int(fake_quantize)}
    if search is not None:
        search["seconds"] = round(time.perf_counter() - start, 2)
        settings["float_operations"] = [r["name"] for r in search["raised"]]
        settings["precision_search"] = search
    return settings


def _with_accuracy_control(model, dataset, options: dict[str, Any], holdout: Holdout, target: Target,
                           log: Callable[[str], None]):
    """NNCF's accuracy-controlled quantization on the held-out images; (model, precision_search record)."""
    import nncf

    reference = holdout.reference_logits.argmax(-1)
    n = len(holdout.inputs)
    allowed = holdout.allowed_disagreements(target)
    # NNCF's metric is agreement with the fp32 file, which the fp32 model scores 1.0 on; the drop
    # it may lose is what the judge's margin allows. No agreement budget: only the accuracy drop.
    max_drop = max(allowed, 0) / n if allowed is not None else 1.0

    def agreement(compiled, items) -> tuple[float, list[float]]:
        per_item = [float(np.argmax(compiled(x)[compiled.output(0)]) == reference[i]) for x, i in items]
        return float(np.mean(per_item)) if per_item else 0.0, per_item

    validation = nncf.Dataset([(np.ascontiguousarray(x[None], dtype=np.float32), i)
                               for i, x in enumerate(holdout.inputs)], lambda item: item[0])
    lines: list[str] = []
    nncf_log = logging.getLogger("nncf")
    # NNCF's own handler prints every step; while it runs, its INFO lines go to a list instead
    saved = nncf_log.handlers[:], nncf_log.level, nncf_log.propagate
    nncf_log.handlers, nncf_log.propagate = [_Collect(lines)], False
    nncf_log.setLevel(logging.INFO)
    # Without SmoothQuant: NNCF's control removes quantizers but leaves SmoothQuant's rescaling, and
    # on emotion-vit gave up with a file at 15% held-out agreement; without it, 98.4% (10 of 38
    # quantizers removed), where plain quantization with SmoothQuant reached 97.3%
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    no_smoothing = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    try:
        with quiet():
            quantized = nncf.quantize_with_accuracy_control(
                model, dataset, validation, agreement, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
                advanced_quantization_parameters=no_smoothing, **options)
    finally:
        nncf_log.handlers, nncf_log.level, nncf_log.propagate = saved
    total, reverted = _reverted(lines)

    def judged(candidate, raised: int) -> dict[str, Any]:
        return {"raised": raised, **holdout.judge(run_openvino(candidate, holdout.inputs), target), "images": n}

    rows = [judged(quantized, len(reverted))]
    log(f"  NNCF accuracy control: {len(reverted)} of {total} quantized operations float, held-out agreement "
        f"{rows[0]['agreement'] * 100:.1f}% -> {'pass' if rows[0]['passed'] else 'miss'}")
    search = {"judged_on": f"{n} held-out calibration images (not the evaluation set)", "holdout_images": n,
              "target": target.to_dict(), "candidates": total, "raised_to": "float",
              "tool": "nncf.quantize_with_accuracy_control", "max_drop": round(max_drop, 6),
              "raised": [{"name": name, "sensitivity": None} for name in reverted], "rounds": rows}
    if not rows[0]["passed"]:
        # When NNCF gives up it can return a worse file than plain quantization (with SmoothQuant on,
        # emotion-vit: 15% held-out agreement against 97% for nncf.quantize): keep the better.
        with quiet("nncf"):
            plain = nncf.quantize(model, dataset, **options)
        rows.append(judged(plain, 0))
        log(f"  missed: plain NNCF quantization, held-out agreement {rows[1]['agreement'] * 100:.1f}%")
        if (rows[1]["passed"], rows[1]["agreement_lower"]) > (rows[0]["passed"], rows[0]["agreement_lower"]):
            quantized, search["raised"] = plain, []
            search["fallback"] = "NNCF's accuracy control missed; plain nncf.quantize judged better on the holdout"
    chosen = 1 if search.get("fallback") else 0
    rows[chosen]["chosen"] = True
    search["passed_on_holdout"] = rows[chosen]["passed"]
    return quantized, search


class _Collect(logging.Handler):
    """Keeps NNCF's log lines: its accuracy control reports what it returned to float only there."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _reverted(lines: list[str]) -> tuple[int, list[str]]:
    """(quantized operations, names of those reverted to float) from NNCF's accuracy-control report."""
    total = next((int(line.rsplit(":", 1)[1]) for line in lines
                  if line.startswith("Total number of quantized operations")), 0)
    for line in reversed(lines):
        if "were reverted back to the floating-point precision" in line:
            return total, [name.strip() for name in line.splitlines()[1:] if name.strip()]
    return total, []


def run_openvino(model, inputs: np.ndarray) -> np.ndarray:
    """Logits of ``model`` (an IR folder, or an ``ov.Model``) on NCHW ``inputs``, image by image
    (fp32 on the CPU plugin)."""
    import openvino as ov

    source = str(Path(model) / IR_NAME) if isinstance(model, (str, Path)) else model
    compiled = ov.Core().compile_model(source, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.concatenate([compiled(np.ascontiguousarray(x[None], dtype=np.float32))[compiled.output(0)]
                           for x in inputs])
