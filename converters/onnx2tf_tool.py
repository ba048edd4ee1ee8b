"""Calling onnx2tf safely: its own process, a working directory we control, no downloads.

onnx2tf is used as a tool, not a library: it runs in a child process (it holds gigabytes
on big models and prints pages of logs), its log goes to a file, and its working directory
is a scratch folder. That folder gets the calibration sample that onnx2tf would otherwise
download from the internet (it looks in the working directory first), made from real images.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeport.converters.atomic import atomic_path
from edgeport.converters.checksums import sha256_file
from edgeport.converters.child_process import measure_command
from edgeport.converters.onnx_rewrites import expand_reduce_l2
from edgeport.runtimes.lean_start import UNUSED_BY_KERAS, hiding_code
from edgeport.runtimes.onnxruntime_runner import UNSAFE_OPTIMIZERS

# The file name onnx2tf looks for before it tries to download its sample.
ONNX2TF_SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"


class ConversionError(RuntimeError):
    """A converter failed; the message says which step and where its log is."""


def write_onnx2tf_sample(image_paths: Sequence[Path], work_dir: Path, count: int = 20) -> Path:
    """Write onnx2tf's 20x128x128x3 float32 [0, 1] sample into ``work_dir``.

    From real images when there are any; otherwise ``generated_sample()``. onnx2tf uses this
    sample only for its own checks in a float conversion (edgeport's calibrated variants get
    their images elsewhere), so a float export must not need the user's images.
    """
    from PIL import Image, ImageOps

    arrays = []
    for path in list(image_paths)[:count]:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB").resize((128, 128), Image.BILINEAR)
            arrays.append(np.asarray(rgb, dtype=np.float32) / 255.0)
    while arrays and len(arrays) < count:  # repeat real images rather than invent data
        arrays.append(arrays[len(arrays) % len(image_paths)])
    sample = np.stack(arrays).astype(np.float32) if arrays else generated_sample(count)
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / ONNX2TF_SAMPLE_NAME
    np.save(out, sample)
    return out


def generated_sample(count: int = 20, size: int = 128) -> np.ndarray:
    """``count`` deterministic image-like arrays (NHWC float32 in [0, 1]), nothing downloaded.

    Smooth colour gradients at a different angle per image, with mild seeded noise: values
    spread over the whole range, like photographs, rather than constant or white noise.
    """
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    images = []
    for i in range(count):
        angle = 2 * np.pi * i / count
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        channels = [0.5 + 0.5 * np.sin(np.pi * (ramp + c / 3.0) + i) for c in range(3)]
        image = np.stack(channels, axis=-1) + rng.normal(0.0, 0.05, (size, size, 3))
        images.append(np.clip(image, 0.0, 1.0))
    return np.stack(images).astype(np.float32)


def simplify_to_batch1(onnx_path: Path, out_path: Path) -> Path:
    """Write a batch-1 copy of ``onnx_path`` with its shape arithmetic folded to constants.

    onnx2tf's TensorFlow path mis-lays-out ViT's position-embedding Add when the batch
    is dynamic (it sees [?, ?, hidden] + [1, tokens, hidden]); fixing the batch at 1 and
    folding the Shape/Gather/Concat chains first gives it static shapes everywhere.

    The folding is onnxruntime's basic graph optimization level, which rewrites only into
    standard ONNX ops (constant folding, no-op elimination). It replaced onnx-simplifier
    here: on ViT-B/16 it takes about 10 s, against 50-110 s for onnx-simplifier.
    MatMulAddFusion is turned off: on 3-D activations it turns each Linear into
    Reshape + Gemm + Reshape, which onnx2tf would carry into the TFLite file as extra ops;
    so are the fusions that change results (runtimes.onnxruntime_runner.UNSAFE_OPTIMIZERS).
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(onnx_path))
    graph_input = model.graph.input[0]
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    make_input_shape_fixed(model.graph, graph_input.name, [1, *dims[1:]])
    fix_output_shapes(model)
    fixed = out_path.with_name(out_path.name + ".fixed.onnx")
    try:
        onnx.save(model, str(fixed))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(out_path)
        ort.InferenceSession(str(fixed), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["MatMulAddFusion", *UNSAFE_OPTIMIZERS])
    finally:
        fixed.unlink(missing_ok=True)
    folded = onnx.load(str(out_path))
    foreign = sorted({n.op_type for n in folded.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise ConversionError(f"folding {onnx_path} at batch 1 produced non-standard ops {', '.join(foreign)}")
    if expand_reduce_l2(folded):  # ops onnx2tf's TensorFlow path cannot build (converters.onnx_rewrites)
        onnx.save(folded, str(out_path))
    return out_path


def shared_batch1_model(onnx_path: Path, folder: Path) -> Path:
    """``simplify_to_batch1`` of ``onnx_path`` into ``folder``, done once per ONNX file.

    Both onnx2tf runs (flatbuffer_direct and the TensorFlow backend) need the same input;
    on ViT-B/16 folding takes about 10 s, so the second run reuses the first's file
    when the stamp beside it names the same source bytes.
    """
    out = folder / "model_b1.onnx"
    stamp = folder / "model_b1.onnx.source-sha256"
    key = sha256_file(onnx_path)
    if out.exists() and stamp.exists() and stamp.read_text() == key:
        return out
    folder.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    with atomic_path(out) as tmp:
        simplify_to_batch1(onnx_path, tmp)
    stamp.write_text(key)
    return out


# onnx2tf's TensorFlow backend writes the SavedModel, then always converts it to TFLite
# (fp32, fp16 and more): 8+ minutes and ~12 GB on ViT-B/16, for files edgeport makes
# otherwise (flatbuffer_direct + ai-edge-quantizer). onnx2tf has no "SavedModel only"
# switch, so the child replaces TensorFlow's TFLite converter with one that ends the process
# cleanly as soon as onnx2tf reaches for it, i.e. right after the SavedModel is on disk.
_SAVEDMODEL_ONLY = """
import sys
import tensorflow as tf

class _StopAfterSavedModel:
    @staticmethod
    def _stop(*args, **kwargs):
        print("edgeport: SavedModel written; skipping onnx2tf's TFLite conversion", flush=True)
        raise SystemExit(0)

    from_keras_model = from_concrete_functions = from_saved_model = _stop

tf.lite.TFLiteConverter = _StopAfterSavedModel
"""


def prepare_onnx2tf_run(onnx_path: Path, work_dir: Path, sample_images: Sequence[Path], output: str) -> tuple[Path, Path]:
    """Scratch folder with onnx2tf's sample and the shared batch-1 model; returns (model, empty output dir)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    write_onnx2tf_sample(sample_images, work_dir)
    static = shared_batch1_model(Path(onnx_path), work_dir.parent)
    out_dir = work_dir / output
    shutil.rmtree(out_dir, ignore_errors=True)
    return static, out_dir


def onnx2tf_args(model: Path, out_dir: Path, backend: str, *extra: str) -> list[str]:
    """onnx2tf's command line for ``backend`` ("flatbuffer_direct" or "tf_converter").

    -nuo: the input is the folded batch-1 model, so onnx2tf's own onnxsim pass would redo
    that work. -rtpo Erf (TensorFlow backend): an Erf left in the graph (opset < 20 exports)
    becomes builtin ops rather than FlexErf.
    """
    args = ["-i", str(model), "-o", str(out_dir), "-tb", backend, *extra]
    if backend == "tf_converter":
        args += ["-rtpo", "Erf"]
    return args + ["-doem", "-nuo", "-v", "warn"]


# The TensorFlow backend mis-lays-out tensors whose non-batch dims are all equal (ViT with
# num_patches == hidden_size, small Swin windows): see onnx2tf_layout_fix.py, run in the child.
_LAYOUT_FIX = Path(__file__).with_name("onnx2tf_layout_fix.py")


def run_onnx2tf(args: Sequence[str], *, work_dir: Path, log_path: Path, savedmodel_only: bool = False) -> None:
    """Run ``onnx2tf ARGS`` in ``work_dir``; raise ConversionError with the log's tail on failure.

    ``savedmodel_only``: stop the TensorFlow backend once it has written the SavedModel.
    The TensorFlow backend (``-tb tf_converter``) also gets onnx2tf_layout_fix.py.
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    # onnx2tf calls the `onnxsim` executable, which lives next to our interpreter.
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    args = list(args)
    tf_backend = "-tb" in args and args[args.index("-tb") + 1:][:1] == ["tf_converter"]
    # the child runs onnx2tf alone: Keras need not import scikit-learn there (runtimes.lean_start)
    code = (hiding_code(UNUSED_BY_KERAS) + (_SAVEDMODEL_ONLY if savedmodel_only else "")
            + ("\n" + _LAYOUT_FIX.read_text() if tf_backend else "")
            + "\nimport sys, onnx2tf; sys.exit(onnx2tf.main())")
    cmd = [sys.executable, "-c", code, *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        log.write("$ onnx2tf " + " ".join(args) + "\n")
        log.flush()
        _, _, returncode = measure_command(cmd, env=env, cwd=work_dir, stdout=log,
                                           label=f"onnx2tf (log: {log_path})", heartbeat_s=30.0)
    if returncode != 0:
        raise ConversionError(
            f"onnx2tf exited with status {returncode}; log: {log_path}\n" + _tail(log_path)
        )


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines()
    # onnx2tf's progress bars are long carriage-return lines; keep the readable ones.
    useful = [line for line in text if "it/s" not in line and line.strip()]
    return "\n".join(useful[-lines:])
