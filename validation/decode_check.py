"""What a model's ``decode = "draft"`` changes, measured on its evaluation set for the report.

Every variant is judged on the pixels it will be served (the draft-decoded ones), so the parity
figures say nothing about the decoding itself. This compares one variant's logits on the same
images decoded both ways: how many images the draft mode decoded at a reduced scale, how many
top-1 classes it kept, and how far the logits moved. Written here because no library measures a
decoder change against a model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.validation.dataset import EvalSet, load_eval_arrays
from edgeport.validation.preprocess import DRAFT_GAP, Preprocessing


def compare_decodes(eval_set: EvalSet, pre: Preprocessing, draft_inputs: np.ndarray, variant: str, runtime: str,
                    path: Path, threads: int = 2) -> dict[str, Any]:
    """``draft_inputs`` (``eval_set`` decoded as ``pre`` does, ``decode="draft"``) against the same
    images decoded fully, through ``variant`` (its ``runtime`` on ``path``)."""
    from edgeport.runtimes import runner_class

    exact_set = dataclasses.replace(eval_set, skipped=[])  # the same files fail either way: counted once
    exact_inputs, _, _ = load_eval_arrays(exact_set, dataclasses.replace(pre, decode="exact"), progress=False)
    if exact_inputs.shape != draft_inputs.shape:
        raise ValueError(f"{len(exact_inputs)} images decode fully and {len(draft_inputs)} in draft mode")
    reduced = int(np.any(exact_inputs != draft_inputs, axis=(1, 2, 3)).sum())
    with runner_class(runtime)(path, threads=threads) as runner:
        exact, draft = runner.infer(exact_inputs), runner.infer(draft_inputs)
    return {"mode": "draft", "gap": DRAFT_GAP, "images": int(len(draft_inputs)), "reduced_images": reduced,
            "judged_with": variant,
            "top1_agreement_with_exact": round(float(np.mean(exact.argmax(1) == draft.argmax(1))), 6),
            "max_abs_diff": float(np.abs(exact - draft).max()) if len(draft) else 0.0}


def decode_markdown(report: dict[str, Any]) -> list[str]:
    """The report's lines on the decode mode (none for exact decoding)."""
    check = report.get("decode")
    if not check:
        return []
    head = (f"Decoding: draft (a JPEG at the reduced DCT scale that keeps it at least {check['gap']}x the resize "
            f"size; `decode` in the config). ")
    if check.get("error"):
        return ["", head + f"Not compared with full decoding: {check['error']}"]
    return ["", head + f"{check['reduced_images']} of {check['images']} evaluation images were decoded reduced; "
            f"against full decoding, {check['judged_with']} keeps the top-1 class on "
            f"{100 * check['top1_agreement_with_exact']:.2f}% of the images, logits at most "
            f"{check['max_abs_diff']:.4g} apart. Every variant above is judged on the draft-decoded pixels, "
            "which are what `edgeport serve` decodes."]
