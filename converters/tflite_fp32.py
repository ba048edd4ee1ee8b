"""ONNX -> TFLite fp32 (onnx2tf: flatbuffer_direct backend first, TensorFlow backend as fallback).

flatbuffer_direct writes the .tflite straight from the ONNX graph: on ViT-B/16 about 16 s
and 3 GB, against minutes and 12+ GB for onnx2tf's TensorFlow backend (Keras graph, then
TensorFlow's TFLite converter). When flatbuffer_direct fails on a model (an op it cannot
lower, or a Flex/custom op in its file), the variant falls back to the TensorFlow backend
rather than failing; the manifest records which backend made the file and why.

Linear layers come out of flatbuffer_direct as BATCH_MATMUL; they are rewritten as
FULLY_CONNECTED (converters.tflite_graph) so that the quantized TFLite variants made from
this file get per-channel int8 and fp16 weights. A MaxPool's border padding with the lowest
float (ResNet's stem) becomes a zero PAD where the input is a ReLU's output, which gives the
same maxima and which ai-edge-quantizer can quantize, and onnx2tf's spelled-out HardSwish
(LeViT) becomes the HARD_SWISH builtin again, which it can quantize too (converters.tflite_graph).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgeport.converters.atomic import atomic_path
from edgeport.converters.onnx2tf_tool import ConversionError, onnx2tf_args, prepare_onnx2tf_run, run_onnx2tf
from edgeport.converters.tflite_graph import batch_matmul_to_fully_connected, hard_swish_from_parts, max_pool_padding_to_zeros
from edgeport.converters.tflite_ops import require_builtin_ops

BACKENDS = ("flatbuffer_direct", "tf_converter")
# A backend's file must match the ONNX model it came from this closely before it is kept: the
# fp32 budget (1e-4 against PyTorch), with room for the inputs being random, not images.
PARITY_ATOL = 1e-3
# Above this on the seeded random inputs, a file that passed PARITY_ATOL is compared with the next
# backend's, and the closer one kept. A tenth of the fp32 budget (1e-4 against PyTorch on real
# images): SigLIP's flatbuffer_direct file was 6.5e-5 off here and 5.5e-4 off on real faces,
# missing the budget, where the TensorFlow backend's is exact; 19 other files measured here
# (bundled models and the matrix's newer architectures, 2026-12-05) were at most 2.4e-6 off,
# so the second conversion runs only for files like SigLIP's.
PREFER_BELOW = 1e-5


def max_diff_from_onnx(tflite_path: Path, onnx_path: Path, runs: int = 2) -> float:
    """Largest logit difference between a .tflite file and its ONNX source on seeded random inputs.

    flatbuffer_direct can write a file that loads and runs but computes something else
    (FocalNet: 2.0 off); checked here so that the other backend is tried instead. onnxruntime
    runs with graph optimizations off, so its own fusions cannot blur the comparison.
    """
    import numpy as np
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    onnx_input = session.get_inputs()[0]
    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(runs):
        x = rng.standard_normal([int(d) for d in onnx_input.shape]).astype(np.float32)  # batch 1, NCHW
        expected = session.run(None, {onnx_input.name: x})[0]
        lite_x = x if list(detail["shape"]) == list(x.shape) else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        interpreter.set_tensor(detail["index"], lite_x)
        interpreter.invoke()
        worst = max(worst, float(np.abs(interpreter.get_tensor(output["index"]) - expected).max()))
    return worst


def convert_tflite_fp32(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    sample_images: Sequence[Path],
    work_dir: str | Path,
) -> dict:
    """Convert ``onnx_path`` to a float32 ``.tflite`` at ``out_path`` (NHWC input, batch 1).

    Returns {"ops": [...], "backend": ..., ...}; raises ConversionError (naming both
    backends' errors) when neither backend gives a builtin-only file.
    """
    errors: list[str] = []
    kept: tuple[dict, bytes] | None = None  # a file within PARITY_ATOL but above PREFER_BELOW
    for backend in BACKENDS:
        try:
            settings = _convert_with(backend, Path(onnx_path), Path(out_path), sample_images, Path(work_dir))
        except ConversionError as exc:
            errors.append(f"{backend}: {exc}")
            continue
        settings["backend"] = f"onnx2tf {backend}"
        if errors:
            settings["fallback_reason"] = errors[0][:2000]
        if kept is not None:  # the earlier backend's file was further off: keep the closer one
            earlier, data = kept
            if settings["onnx_max_abs_diff"] >= earlier["onnx_max_abs_diff"]:
                _write(out_path, data)
                return {**earlier, "closer_than": f"{settings['backend']} ({settings['onnx_max_abs_diff']:.3g})"}
            settings["fallback_reason"] = (f"the {earlier['backend']} file differs from the ONNX model by "
                                           f"{earlier['onnx_max_abs_diff']:.3g}, above {PREFER_BELOW:g}")
            return settings
        if settings["onnx_max_abs_diff"] > PREFER_BELOW and backend != BACKENDS[-1]:
            kept = (settings, Path(out_path).read_bytes())
            continue
        return settings
    if kept is not None:  # the next backend failed: the earlier file is within PARITY_ATOL
        _write(out_path, kept[1])
        return {**kept[0], "closer_than": f"nothing: {errors[-1][:500]}"}
    raise ConversionError("no onnx2tf backend produced a builtin-only TFLite file:\n" + "\n".join(errors))


def _write(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def _convert_with(backend: str, onnx_path: Path, out_path: Path, sample_images: Sequence[Path],
                  work: Path) -> dict:
    static, out_dir = prepare_onnx2tf_run(onnx_path, work, sample_images, f"tflite-fp32-{backend}")
    run_onnx2tf(onnx2tf_args(static, out_dir, backend), work_dir=work,
                log_path=work / f"onnx2tf-tflite-fp32-{backend}.log")
    produced = out_dir / f"{static.stem}_float32.tflite"
    if not produced.exists():
        raise ConversionError(f"onnx2tf wrote no {produced.name} in {out_dir}")
    with atomic_path(out_path) as tmp:
        data, rewritten = batch_matmul_to_fully_connected(produced.read_bytes())
        data, pads = max_pool_padding_to_zeros(data)
        data, swishes = hard_swish_from_parts(data)
        Path(tmp).write_bytes(data)
        ops = require_builtin_ops(tmp)
        diff = max_diff_from_onnx(Path(tmp), static)
        if diff > PARITY_ATOL:
            raise ConversionError(f"the {backend} file differs from the ONNX model by {diff:.3g} (max abs logit diff "
                                  f"on seeded random inputs; tolerance {PARITY_ATOL:g})")
    return {"onnx_max_abs_diff": diff, "ops": ops, "linear_layers_as_fully_connected": rewritten, "max_pool_paddings_as_zeros": pads,
            "hard_swish_fused": swishes}
