"""Small ViTs with random weights, for tests and latency benchmarks (never for accuracy)."""
from __future__ import annotations

from pathlib import Path


def make_random_vit(
    out_dir: str | Path,
    *,
    labels: tuple[str, ...] = ("female", "male"),
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 48,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 96,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised ``ViTForImageClassification`` as a normal model directory.

    Its config carries ``edgeport_random_weights: true`` so reports say the weights are random.
    """
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    config.edgeport_random_weights = True
    torch.manual_seed(seed)
    model = ViTForImageClassification(config).eval()
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    ViTImageProcessor(size={"height": image_size, "width": image_size},
                      image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(out)
    return out
