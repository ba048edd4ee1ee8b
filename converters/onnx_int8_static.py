"""ONNX fp32 -> ONNX static int8 (QDQ), calibrated on real images.

Per-channel int8 weights and uint8 activations on MatMul, Gemm and Conv only: LayerNorm,
GELU, Softmax and the residual Adds stay float, where int8 hurts ViTs most.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from converters.atomic import atomic_path

OP_TYPES = ["MatMul", "Gemm", "Conv"]


def convert_onnx_int8_static(onnx_path: str | Path, out_path: str | Path,
                             calibration: np.ndarray) -> tuple[Path, dict]:
    """Quantize ``onnx_path`` statically with ``calibration`` (preprocessed NCHW float32 images).

    Returns (path, settings used).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ValueError("static int8 needs calibration images, and none were given")
    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(len(calibration)))

        def get_next(self):
            i = next(self._it, None)
            return None if i is None else {input_name: calibration[i : i + 1].astype(np.float32)}

    settings = {"format": "QDQ", "op_types": OP_TYPES, "per_channel": True, "weights": "int8",
                "activations": "uint8", "calibration": "minmax", "calibration_images": int(len(calibration))}
    with tempfile.TemporaryDirectory(prefix="edgeport-q-") as tmp_dir, atomic_path(out_path) as tmp:
        pre = Path(tmp_dir) / "pre.onnx"
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=False)
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=OP_TYPES, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return Path(out_path), settings
