"""A Hugging Face image classifier as a module that torch.export can capture."""
from __future__ import annotations

from typing import Any


def logits_module(source: str, revision: str | None = None, **load_kwargs: Any):
    """``source``'s model as a module mapping pixel values (N, C, H, W) to logits (N, labels).

    torch.export wants tensors out, not transformers' ModelOutput dataclass. ``load_kwargs``
    go to ``from_pretrained`` (e.g. ``attn_implementation``).
    """
    import torch
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(source, revision=revision, **load_kwargs).eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=pixel_values).logits

    return Logits(model).eval()
