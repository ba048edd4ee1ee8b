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

from pathlib import Path
from typing import Any

import numpy as np

from converters.atomic import atomic_path
from converters.quiet import quiet

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


def convert_openvino_int8(fp32_dir: str | Path, out_dir: str | Path, calibration: np.ndarray) -> dict[str, Any]:
    """Quantize the IR in ``fp32_dir`` with NNCF on ``calibration`` (NCHW float32) into ``out_dir``."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(Path(fp32_dir) / IR_NAME))
    has_attention = any(op.get_type_name() in ATTENTION_OPS for op in model.get_ops())
    model_type = nncf.ModelType.TRANSFORMER if has_attention else None
    dataset = nncf.Dataset([np.ascontiguousarray(x[None], dtype=np.float32) for x in calibration])
    with quiet("nncf"):  # NNCF logs a progress bar and a line per statistic
        quantized = nncf.quantize(model, dataset, subset_size=len(calibration), model_type=model_type,
                                  preset=nncf.QuantizationPreset.MIXED)
    with atomic_path(out_dir, directory=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, str(tmp / IR_NAME), compress_to_fp16=False)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    return {"precision": "int8", "ir": IR_NAME, "quantizer": f"nncf {nncf.__version__}",
            "model_type": "transformer" if has_attention else "default",
            "preset": "mixed (symmetric weights, asymmetric activations)",
            "calibration_images": int(len(calibration)), "fake_quantize_ops": int(fake_quantize)}
