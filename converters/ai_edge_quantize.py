"""Quantizing a float32 .tflite with ai-edge-quantizer (Google's post-training quantizer).

The fp16, dynamic-int8 and full-integer TFLite variants are all made from the tflite-fp32
artifact in seconds, instead of being re-converted from ONNX by TensorFlow's converter
(minutes and gigabytes per flavour on ViT-B/16). Each variant module says which recipe it
uses; this module runs it, checks the result is builtin-only and writes it atomically.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from converters.atomic import atomic_path
from converters.onnx2tf_tool import ConversionError
from converters.tflite_ops import require_builtin_ops


def signature_input(path: str | Path) -> tuple[str, str]:
    """(signature key, input name) of a single-input .tflite, as the quantizer's calibration wants."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    if len(signatures) != 1:
        raise ConversionError(f"{path}: expected one signature, found {sorted(signatures)}")
    key, sig = next(iter(signatures.items()))
    if len(sig["inputs"]) != 1:
        raise ConversionError(f"{path}: expected one input, found {sig['inputs']}")
    return key, sig["inputs"][0]


def quantize_tflite(
    src: str | Path,
    dest: str | Path,
    recipe: list[dict[str, Any]],
    *,
    calibration_nhwc: np.ndarray | None = None,
    check: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Apply ai-edge-quantizer ``recipe`` to ``src`` and write the result to ``dest``.

    ``calibration_nhwc`` (preprocessed images, N x H x W x C float32) is required by static
    recipes. ``check(path)`` may raise ConversionError to refuse the written file before it
    is renamed into place. Returns {"ops": [...], "quantizer": ...} for the manifest; raises
    ConversionError when the result holds a Flex or custom op.
    """
    # The quantizer draws a progress bar per calibration tensor and warns that it keeps every
    # tensor (it must, to calibrate); this step runs in its own process, so silence both here.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TQDM_DISABLE"] = "1"
    warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
    import ai_edge_quantizer

    quantizer = ai_edge_quantizer.Quantizer(str(src), recipe)
    calibration = None
    if quantizer.need_calibration:
        if calibration_nhwc is None or len(calibration_nhwc) == 0:
            raise ConversionError("this recipe needs calibration images: set the model's 'calibration' folder")
        key, name = signature_input(src)
        samples = [{name: image[None].astype(np.float32)} for image in calibration_nhwc]
        calibration = quantizer.calibrate({key: samples}, num_threads=1)
    result = quantizer.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    with atomic_path(dest) as tmp:
        Path(tmp).write_bytes(bytes(result.quantized_model))
        ops = require_builtin_ops(tmp)
        if check is not None:
            check(Path(tmp))
    return {"ops": ops, "quantizer": f"ai-edge-quantizer {_version()}"}


def _version() -> str:
    from importlib.metadata import version

    return version("ai-edge-quantizer")
