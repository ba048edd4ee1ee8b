"""PyTorch (Hugging Face) -> ExecuTorch program (``.pte``), delegated to XNNPACK.

ExecuTorch is PyTorch's own on-device runtime: ``torch.export`` captures the model, the
XNNPACK partitioner hands every operator XNNPACK runs to it, and the rest runs in
ExecuTorch's portable kernels. The program is exported at batch 1 (what a phone runs, and
XNNPACK's static-shape path); the runner feeds larger batches image by image.

int8 is PT2E post-training quantization with the XNNPACK quantizer: int8 weights per
channel, int8 activations per tensor, calibrated on the calibration images (the same images
as the other static int8 files), then lowered to XNNPACK's integer kernels. Operators the
quantizer has no int8 pattern for (LayerNorm, Softmax, GELU) stay float between
dequantize/quantize pairs, which is the quantizer's own choice, not a per-model switch.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from converters.atomic import atomic_path
from converters.quiet import quiet
from converters.torch_logits import logits_module


def export_executorch(source: str, out_path: str | Path, *, input_size: tuple[int, int], channels: int = 3,
                      revision: str | None = None, calibration: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``source`` as an XNNPACK-delegated ``.pte`` (fp32, or int8 when ``calibration`` is given).

    ``calibration``: preprocessed NCHW float32 images for the int8 observers. Returns the
    settings for the manifest: precision, the quantizer's scheme, and how many operators
    XNNPACK took (``delegate_calls``) and those left to the portable kernels (``ops_outside_delegate``).
    """
    import torch

    # Eager attention: transformers' SDPA path adds mask guards (any/eq/where) that XNNPACK does
    # not take, so they ran in the portable kernels between delegate calls; eager attention
    # is plain MatMul + Softmax, which XNNPACK runs. Every transformers model accepts it.
    module = logits_module(source, revision, attn_implementation="eager")
    example = (torch.zeros(1, channels, *input_size),)
    settings: dict[str, Any] = {"backend": "xnnpack", "batch": 1, "input_layout": "NCHW",
                                "input_shape": [1, channels, *input_size]}
    # torch.export and the lowering passes warn per node; the manifest says what matters
    with quiet(""), torch.no_grad():
        if calibration is None:
            program = torch.export.export(module, example)
            settings["precision"] = "fp32"
        else:
            program = _quantized_program(module, example, calibration)
            settings.update(precision="int8", weights="int8 per channel (symmetric)",
                            activations="int8 per tensor", calibration="minmax (PT2E observers)",
                            calibration_images=int(len(calibration)))
        lowered = _lower(program)
    settings.update(_delegation(lowered))
    with atomic_path(out_path) as tmp:
        Path(tmp).write_bytes(lowered.buffer)
    return settings


def _quantized_program(module, example: tuple, calibration: np.ndarray):
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(module, example).module(), quantizer)
    for image in calibration:
        prepared(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
    return torch.export.export(convert_pt2e(prepared), example)


def _lower(program):
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
