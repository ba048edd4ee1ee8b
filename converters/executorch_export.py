"""PyTorch (Hugging Face) -> ExecuTorch program (``.pte``), delegated to XNNPACK.

ExecuTorch is PyTorch's own on-device runtime: ``torch.export`` captures the model, the
XNNPACK partitioner hands every operator XNNPACK runs to it, and the rest runs in
ExecuTorch's portable kernels. The program is exported at batch 1 (what a phone runs, and
XNNPACK's static-shape path); the runner feeds larger batches image by image.

int8 is PT2E post-training quantization with the XNNPACK quantizer: int8 weights per
channel, int8 activations per tensor, calibrated on the calibration images (the same images
as the other static int8 files), then lowered to XNNPACK's integer kernels. Operators the
quantizer has no int8 pattern for (LayerNorm, Softmax, GELU) stay float between
dequantize/quantize pairs, which is the quantizer's own choice, not a per-model switch; the
Linear/Conv/MatMul nodes the budget needs in float are the precision search's
(``converters.executorch_int8``).
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.converters.atomic import atomic_path
from edgeport.converters.precision_search import Holdout, Target
from edgeport.converters.quiet import quiet
from edgeport.converters.torch_logits import logits_module


def export_executorch(source: str, out_path: str | Path, *, input_size: tuple[int, int], channels: int = 3,
                      revision: str | None = None, calibration: np.ndarray | None = None,
                      holdout: Holdout | None = None, target: Target | None = None,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write ``source`` as an XNNPACK-delegated ``.pte`` (fp32, or int8 when ``calibration`` is given).

    ``calibration``: preprocessed NCHW float32 images for the int8 observers. With a ``holdout``
    (held-out calibration images and PyTorch's logits on them) and a ``target``, the precision
    search (``converters.executorch_int8``) leaves the nodes the budget needs in float. Returns
    the settings for the manifest: precision, the quantizer's scheme, and how many operators
    XNNPACK took (``delegate_calls``) and those left to the portable kernels (``ops_outside_delegate``).
    """
    import torch

    from edgeport.converters.executorch_int8 import CalibratedCapture, module_of, search_executorch_int8

    # Eager attention: transformers' SDPA path adds mask guards (any/eq/where) that XNNPACK does
    # not take, so they ran in the portable kernels between delegate calls; eager attention
    # is plain MatMul + Softmax, which XNNPACK runs. Every transformers model accepts it.
    module = logits_module(source, revision, attn_implementation="eager")
    example = (torch.zeros(1, channels, *input_size),)
    settings: dict[str, Any] = {"backend": "xnnpack", "batch": 1, "input_layout": "NCHW",
                                "input_shape": [1, channels, *input_size]}
    console = sys.stdout

    def say(message: str) -> None:  # the search's progress, past quiet()'s swallowed stdout
        with contextlib.redirect_stdout(console):
            log(message)

    # torch.export and the lowering passes warn per node; the manifest says what matters
    with quiet(""), torch.no_grad():
        if calibration is None:
            lowered = lower_to_xnnpack(torch.export.export(module, example))
            settings["precision"] = "fp32"
            settings.update(_delegation(lowered))
            with atomic_path(out_path) as tmp:
                Path(tmp).write_bytes(lowered.buffer)
            return settings
        settings.update(precision="int8", weights="int8 per channel (symmetric)",
                        activations="int8 per tensor", calibration="histogram observers (XNNPACK quantizer's static config)",
                        calibration_images=int(len(calibration)))
        capture = CalibratedCapture(module, example, calibration)
        delegation: dict[bytes, dict[str, Any]] = {}  # sha256 of a program -> its delegation counts

        def lower(converted) -> bytes:
            program = lower_to_xnnpack(torch.export.export(converted, example))
            data = program.buffer
            delegation[hashlib.sha256(data).digest()] = _delegation(program)
            return data

        with tempfile.TemporaryDirectory(prefix="edgeport-et-") as scratch:
            if holdout is not None and target is not None:
                chosen, search, candidates = search_executorch_int8(capture, lower, Path(scratch), holdout, target,
                                                                    log=say)
                raised = [r["name"] for r in search.raised]
                for row in search.raised:
                    row["module"] = module_of(capture, row["name"])
                settings.update(quantizable_nodes=len(candidates), float_nodes=raised,
                                int8_nodes=len(candidates) - len(raised),
                                precision_search=search.to_dict(holdout, target, "float"))
            else:
                chosen = Path(scratch) / "model.pte"
                chosen.write_bytes(lower(capture.convert([])))
            data = chosen.read_bytes()
    settings.update(delegation[hashlib.sha256(data).digest()])
    with atomic_path(out_path) as tmp:
        Path(tmp).write_bytes(data)
    return settings


def lower_to_xnnpack(program):
    """``program`` (an ExportedProgram) lowered: every operator XNNPACK runs delegated to it."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()


def _delegation(lowered) -> dict[str, Any]:
    """Operators inside XNNPACK delegate calls and those left outside them, by name."""
    outside: Counter[str] = Counter()
    delegated = 0
    for node in lowered.exported_program().graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "executorch_call_delegate" in name:
            delegated += 1
        elif name != "getitem":
            outside[name] += 1
    return {"delegate_calls": delegated, "ops_outside_delegate": dict(sorted(outside.items()))}
