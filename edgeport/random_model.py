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


def fit_probe_head(model_dir: str | Path, images: "np.ndarray", labels: "np.ndarray", ridge: float = 1e-2) -> Path:
    """Replace the classifier of the ViT in ``model_dir`` by a ridge-regression probe on ``images``.

    A random ViT's own head gives near-constant logits, on which "agrees with fp32" is a coin
    toss and an int8 precision search raises everything; a linear probe fitted to real labels
    on its (random) features gives logits that separate images, as a trained head does. The
    backbone stays random: the figures it gives are for cost, not for accuracy. ``images``:
    preprocessed NCHW float32; ``labels``: class index per image. ``ridge`` scales the
    penalty by the features' mean variance.
    """
    import numpy as np
    import torch
    from transformers import ViTForImageClassification

    model = ViTForImageClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        features = torch.cat([model.vit(torch.from_numpy(images[i:i + 16])).last_hidden_state[:, 0]
                              for i in range(0, len(images), 16)]).double().numpy()
    mean = features.mean(0)
    centred = features - mean
    targets = np.eye(model.config.num_labels)[labels] * 2 - 1  # +-1 per class
    penalty = ridge * centred.var(0).mean() * len(features)
    weight = np.linalg.solve(centred.T @ centred + penalty * np.eye(centred.shape[1]), centred.T @ targets)
    bias = targets.mean(0) - mean @ weight
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(weight.T).float())
        model.classifier.bias.copy_(torch.from_numpy(bias).float())
    model.config.edgeport_probe_head = True
    model.save_pretrained(str(model_dir), safe_serialization=True)
    return Path(model_dir)
