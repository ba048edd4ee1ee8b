"""Whether an ONNX file that declares a dynamic batch really takes any batch: checked, not assumed.

An exporter can write a symbolic batch axis on the graph's input and output while a node inside
keeps the batch it was traced with (SigLIP through torch.export: a Reshape to ``(1, 48, 16)``;
torch.export specializes an axis whose example size is 1). Such a file runs at batch 1 and
fails, or silently mixes images, at any other batch. So every ONNX variant is run here at batch
1 and at batch 3 on the same seeded inputs, and each image's output compared; a file that fails
is fixed upstream where possible (converters.onnx_export re-exports it) or pinned to a static
batch of 1, which the runners handle by running images one by one, and recorded as such.

onnx's checker and onnxruntime's shape inference do not catch this (the declared shapes are
consistent); only running the file does, hence this module.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.converters.atomic import atomic_path
from edgeport.runtimes.onnxruntime_runner import UNSAFE_OPTIMIZERS, ort_message

CHECK_BATCH = 3  # odd, and above the 1 and 2 that exporters trace with
# Per precision: how far one image's output may move between batch 1 and batch 3, relative to the
# output's scale. Dynamic int8 quantizes activations with one scale for the whole batch, so its
# outputs legitimately depend on the other images; a baked batch mixes or drops images entirely.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.25}


class BatchCheckError(RuntimeError):
    """The file does not run even at batch 1 after pinning; the message names the file and why."""


def check_batch(path: str | Path, precision: str = "fp32") -> tuple[int | str, str | None]:
    """The batch ``path`` declares (an int, or "any" for a symbolic axis) and, for "any", why it
    cannot take any batch, in one sentence (None when batch 1 and batch 3 give the same per-image
    outputs). A file with a fixed batch has no problem here: its runner splits batches."""
    session = _session(path)
    inp = session.get_inputs()[0]
    if isinstance(inp.shape[0], int):
        return inp.shape[0], None
    shape = [CHECK_BATCH] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    batch = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    try:
        single = np.concatenate([session.run(None, {inp.name: batch[i:i + 1]})[0] for i in range(CHECK_BATCH)])
    except Exception as exc:  # onnxruntime's own exception types
        return "any", f"it does not run even at batch 1: {ort_message(exc)}"
    try:
        together = session.run(None, {inp.name: batch})[0]
    except Exception as exc:
        return "any", f"it runs at batch 1 but fails at batch {CHECK_BATCH}: {ort_message(exc)}"
    if together.shape != single.shape:
        return "any", (f"at batch {CHECK_BATCH} its output has shape {list(together.shape)}, not "
                       f"{list(single.shape)}: the batch is fixed inside the graph")
    scale = max(1.0, float(np.abs(single).max()))
    diff = float(np.abs(together.astype(np.float64) - single.astype(np.float64)).max())
    if diff > TOLERANCE.get(precision, TOLERANCE["fp32"]) * scale:
        return "any", (f"at batch {CHECK_BATCH} an image's output differs from the same image alone by "
                       f"{diff:.3g} (the batch is mixed inside the graph)")
    return "any", None


def pin_batch_one(path: str | Path) -> None:
    """Rewrite ``path`` so that its input and output declare batch 1 (atomic), and check that it
    runs at batch 1; raises BatchCheckError when it does not."""
    import onnx

    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = 1
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    session = _session(path)
    inp = session.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    try:
        session.run(None, {inp.name: np.zeros([1] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]], dtype)})
    except Exception as exc:
        raise BatchCheckError(f"{Path(path).name} does not run at batch 1 either: {ort_message(exc)}") from None


def ensure_any_batch_or_pin(path: str | Path, precision: str = "fp32") -> dict:
    """Check ``path``; when it cannot take any batch, pin it to batch 1. Returns the manifest's
    record of it: ``{"batch": "any"}``, ``{"batch": N}`` (declared fixed), or
    ``{"batch": 1, "batch_note": why}`` (pinned here)."""
    declared, problem = check_batch(path, precision)
    if problem is None:
        return {"batch": declared}
    pin_batch_one(path)
    return {"batch": 1, "batch_note": f"declared a dynamic batch, but {problem}; pinned to batch 1 "
                                      "(runners feed it one image at a time)"}


def _session(path: str | Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # a failure is returned as a sentence, not logged
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=UNSAFE_OPTIMIZERS)
