"""ONNX -> TensorFlow SavedModel fp32 (onnx2tf, TensorFlow converter backend)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from converters.atomic import atomic_path
from converters.onnx2tf_tool import run_onnx2tf, simplify_to_batch1, write_onnx2tf_sample


def convert_savedmodel(
    onnx_path: str | Path,
    out_dir: str | Path,
    *,
    sample_images: Sequence[Path],
    work_dir: str | Path,
) -> Path:
    """Convert ``onnx_path`` to a SavedModel directory at ``out_dir`` (NHWC input, batch 1).

    ``-rtpo Erf`` makes onnx2tf write exact GELU's Erf with builtin ops; without it the
    TFLite files it writes alongside hold a Flex op.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    write_onnx2tf_sample(sample_images, work)
    static = simplify_to_batch1(Path(onnx_path), work / "model_b1.onnx")
    with atomic_path(out_dir, directory=True) as tmp_dir:
        run_onnx2tf(
            ["-i", str(static), "-o", str(tmp_dir), "-tb", "tf_converter", "-osd",
             "-rtpo", "Erf", "-doem", "-v", "warn"],
            work_dir=work,
            log_path=work / "onnx2tf-savedmodel.log",
        )
        # onnx2tf also writes TFLite files next to the SavedModel; they are not this artifact.
        for extra in Path(tmp_dir).glob("*.tflite"):
            extra.unlink()
    return Path(out_dir)
