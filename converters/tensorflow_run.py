"""One onnx2tf run with the TensorFlow converter backend, shared by several variants.

onnx2tf's TensorFlow path builds the Keras graph once and writes the SavedModel and every
TFLite flavour from it (fp32, fp16, dynamic-range int8, full-integer int8 with float or
int8 I/O). Building that graph is the slow part on big models, so it runs once per export
and each variant takes its file from the result.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.onnx2tf_tool import ConversionError, run_onnx2tf, shared_batch1_model, write_onnx2tf_sample

# suffixes of the files onnx2tf writes, by what they are
FILES = {
    "fp32": "_float32.tflite",
    "fp16": "_float16.tflite",
    "int8-dynamic": "_dynamic_range_quant.tflite",
    "int8": "_integer_quant.tflite",
    "int8-io": "_full_integer_quant.tflite",
}


@dataclass(frozen=True)
class CalibrationData:
    """Calibration images for onnx2tf: NHWC float32 in [0, 1] plus the model's mean/std."""

    images_nhwc: np.ndarray
    mean: Sequence[float]
    std: Sequence[float]


def tensorflow_outputs(
    onnx_path: Path,
    work_dir: Path,
    *,
    sample_images: Sequence[Path],
    calibration: CalibrationData | None,
) -> Path:
    """Run onnx2tf (TF backend) once for these inputs and return its output folder.

    With ``calibration`` the run also writes the int8 files (``-oiqt``). A completed run
    with the same inputs is reused.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    key = _key(onnx_path, calibration)
    out_dir = work_dir / "onnx2tf-tf"
    stamp = out_dir / ".complete"
    if stamp.exists() and stamp.read_text() == key:
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    write_onnx2tf_sample(sample_images, work_dir)
    static = shared_batch1_model(onnx_path, work_dir.parent)
    # -rtpo Erf: an Erf left in the graph (opset < 20 exports) becomes builtin ops, not FlexErf.
    # -nuo: the input is already simplified; onnx2tf's own onnxsim pass would redo that work.
    args = ["-i", str(static), "-o", str(out_dir), "-tb", "tf_converter", "-osd", "-rtpo", "Erf",
            "-doem", "-nuo", "-v", "warn"]
    if calibration is not None:
        calib_path = work_dir / "calibration_nhwc.npy"
        np.save(calib_path, calibration.images_nhwc.astype(np.float32))
        args += ["-oiqt", "-cind", "pixel_values", str(calib_path),
                 json.dumps([[[list(map(float, calibration.mean))]]]),
                 json.dumps([[[list(map(float, calibration.std))]]])]
    run_onnx2tf(args, work_dir=work_dir, log_path=work_dir / "onnx2tf-tf.log")
    stamp.write_text(key)
    return out_dir


def tflite_file(out_dir: Path, kind: str) -> Path:
    """The TFLite file of ``kind`` (a key of FILES) in a tensorflow_outputs folder."""
    matches = sorted(out_dir.glob(f"*{FILES[kind]}"))
    matches = [m for m in matches if "with_int16_act" not in m.name]
    if kind == "int8":  # "_integer_quant" is also the tail of "_full_integer_quant"
        matches = [m for m in matches if "full_integer" not in m.name]
    if not matches:
        raise ConversionError(f"onnx2tf wrote no *{FILES[kind]} in {out_dir} (see onnx2tf-tf.log beside it)")
    return matches[0]


def _key(onnx_path: Path, calibration: CalibrationData | None) -> str:
    h = hashlib.sha256()
    h.update(str(onnx_path.stat().st_mtime_ns).encode() + str(onnx_path.stat().st_size).encode())
    if calibration is not None:
        h.update(np.ascontiguousarray(calibration.images_nhwc, dtype=np.float32).tobytes())
        h.update(repr((list(calibration.mean), list(calibration.std))).encode())
    return h.hexdigest()


def copy_checked_tflite(out_dir: Path, kind: str, dest: str | Path) -> dict:
    """Copy the ``kind`` .tflite of a tensorflow_outputs folder to ``dest`` if it is builtin-only.

    Returns {"ops": [...]} for the manifest; raises ConversionError naming any Flex/custom op.
    """
    from converters.atomic import atomic_path
    from converters.tflite_ops import require_builtin_ops

    src = tflite_file(out_dir, kind)
    ops = require_builtin_ops(src)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return {"ops": ops}
