"""The distillation loop: the student learns the teacher's softened outputs (and the labels when
there are any), is judged on held-out images by its agreement with the teacher, and stops when
that stops improving or the step or time budget is spent.

Written here rather than with transformers' Trainer: the loop needs a time budget, early
stopping on agreement with a teacher, soft targets read from a cache and checkpoints that
restore the data order exactly, which would be as much code around Trainer as the loop is.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.validation.metrics import agreement as top1_agreement


@dataclass(frozen=True)
class TrainSettings:
    """Everything the training depends on besides the data and the student (all in the checkpoint key)."""

    max_steps: int = 4000
    minutes: float = 15.0  # wall-clock budget for the training steps (a resumed run counts what it did before)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    temperature: float = 4.0
    label_weight: float = 0.3  # share of the label loss when the images have labels
    holdout_share: float = 0.1
    eval_every: int = 200
    patience: int = 5  # evaluations without a better holdout agreement before stopping
    augment: bool = True  # horizontal flip, a shift of up to 1/16 of the side, brightness and contrast
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    state: dict[str, Any]  # the best student's weights (by holdout agreement)
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why training ended
    best_step: int = 0
    holdout_agreement: float = 0.0
    holdout_images: int = 0
    train_images: int = 0
    resumed_from: int | None = None
    device: str = "cpu"


def holdout_split(count: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, holdout indices): a seeded ``share`` of the images, at least 20 and at most
    1000, held out for early stopping (none when there are fewer than 100 images: the student is
    then judged on its training images)."""
    order = np.random.default_rng(seed).permutation(count)
    held = 0 if count < 100 else int(min(1000, max(20, round(count * share))))
    return np.sort(order[held:]), np.sort(order[:held])


def _augment(x, generator, torch):
    """A uint8 (B, H, W, 3) batch, randomly flipped, shifted and recoloured, as float (B, 3, H, W) in 0..1."""
    b, h, w, _ = x.shape
    x = x.permute(0, 3, 1, 2).float() / 255.0
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = max(1, round(min(h, w) / 16))
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    brightness = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.4
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.4
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean * brightness).clamp(0, 1)


def agreement(student: np.ndarray, teacher: np.ndarray, multi_label: bool) -> float:
    """Top-1 agreement (multi-label: the share of label decisions at 0.5 that agree)."""
    if multi_label:  # a sigmoid above 0.5 is a logit above 0
        return float(((student > 0) == (teacher > 0)).mean())
    return top1_agreement(student, teacher)


def train_student(model: Any, views: np.ndarray, teacher: np.ndarray, labels: np.ndarray | None, *,
                  mean: tuple[float, ...], std: tuple[float, ...], settings: TrainSettings, checkpoint: Path,
                  key: str, multi_label: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print) -> TrainResult:
    """Train ``model`` on ``views`` (uint8 N x H x W x 3, the student's input size) against the
    teacher's logits; checkpoint to ``checkpoint`` at every evaluation, and resume from it when
    its ``key`` is this run's."""
    import torch
    from tqdm import tqdm

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    train_idx, held_idx = holdout_split(len(views), settings.holdout_share, settings.seed)
    held_out = int(len(held_idx))
    if not held_out:
        held_idx = train_idx  # too few images to hold any out: judge on the training images
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    all_views = torch.from_numpy(views)
    teacher_t = torch.from_numpy(teacher)
    labels_t = torch.from_numpy(labels) if labels is not None else None
    t = settings.temperature

    def normalize(x):
        return ((x - mean_t) / std_t).to(device)

    def holdout_logits() -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(held_idx), 256):
                x = all_views[held_idx[s:s + 256]].permute(0, 3, 1, 2).float() / 255.0
                out.append(model(pixel_values=normalize(x)).logits.float().cpu().numpy())
        model.train()
        return np.concatenate(out)

    step, elapsed, history, stopped = 0, 0.0, [], ""
    best = {"agreement": -1.0, "step": 0, "state": None}
    since_best, order, position, resumed_from = 0, None, 0, None
    if checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved.get("key") == key:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            generator.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])  # dropout draws from torch's global generator
            step, elapsed, history = saved["step"], saved["elapsed"], saved["history"]
            best, since_best = saved["best"], saved["since_best"]
            order, position = saved["order"], saved["position"]
            stopped = saved.get("stopped", "")  # killed after the last step, before the folder was written
            resumed_from = step
            log(f"distill: resuming from the checkpoint at step {step} ({checkpoint})")
        else:
            log(f"distill: {checkpoint} is from other settings or images; starting again")

    def save_checkpoint() -> None:
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        torch.save({"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                    "elapsed": elapsed, "history": history, "stopped": stopped,
                    "best": best, "since_best": since_best, "order": order, "position": position}, tmp)
        os.replace(tmp, checkpoint)

    warmup = max(1, min(200, settings.max_steps // 30))
    budget = settings.minutes * 60
    bar = tqdm(total=settings.max_steps, initial=step, desc="distill", unit="step", disable=not progress)
    if resumed_from is None:
        torch.manual_seed(settings.seed)
    model.train()
    start = time.perf_counter() - elapsed
    while not stopped:
        if order is None or position + settings.batch_size > len(order):
            order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
            position = 0
        batch = order[position:position + settings.batch_size]
        position += len(batch)
        x = all_views[batch]
        x = _augment(x, generator, torch) if settings.augment else x.permute(0, 3, 1, 2).float() / 255.0
        progress_share = max(step / settings.max_steps, elapsed / budget if budget > 0 else 0.0)
        lr = settings.lr * (min(1.0, (step + 1) / warmup) *
                            0.5 * (1 + math.cos(math.pi * min(1.0, progress_share))))
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = model(pixel_values=normalize(x)).logits.float()
        soft = teacher_t[batch].to(device)
        if multi_label:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits / t, torch.sigmoid(soft / t))
        else:
            loss = torch.nn.functional.kl_div(torch.log_softmax(logits / t, 1), torch.log_softmax(soft / t, 1),
                                              reduction="batchmean", log_target=True) * t * t
            if labels_t is not None and settings.label_weight > 0:
                hard = torch.nn.functional.cross_entropy(logits, labels_t[batch].to(device))
                loss = (1 - settings.label_weight) * loss + settings.label_weight * hard
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        elapsed = time.perf_counter() - start
        bar.update(1)
        if step % settings.eval_every == 0 or step >= settings.max_steps or elapsed >= budget:
            agree = agreement(holdout_logits(), teacher[held_idx], multi_label)
            history.append({"step": step, "seconds": round(elapsed, 1), "loss": round(loss.item(), 4),
                            "holdout_agreement": round(agree, 4), "lr": round(lr, 6)})
            if agree > best["agreement"]:
                best = {"agreement": agree, "step": step,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
                since_best = 0
            else:
                since_best += 1
            bar.set_postfix(agreement=f"{agree:.3f}", best=f"{best['agreement']:.3f}")
            if not progress:  # a heartbeat line instead of the bar
                log(f"distill: step {step}, {elapsed / 60:.1f} min, loss {loss.item():.4f}, holdout agreement "
                    f"{agree * 100:.2f}% (best {best['agreement'] * 100:.2f}%)")
            if step >= settings.max_steps:
                stopped = f"step budget ({settings.max_steps} steps)"
            elif elapsed >= budget:
                stopped = f"time budget ({settings.minutes:g} min)"
            elif since_best >= settings.patience:
                stopped = (f"holdout agreement did not improve for {settings.patience} evaluations "
                           f"({settings.patience * settings.eval_every} steps)")
            save_checkpoint()
    bar.close()
    return TrainResult(state=best["state"], history=history, steps=step, seconds=round(elapsed, 1), stopped=stopped,
                       best_step=best["step"], holdout_agreement=round(best["agreement"], 4),
                       holdout_images=held_out, train_images=int(len(train_idx)),
                       resumed_from=resumed_from, device=device)
