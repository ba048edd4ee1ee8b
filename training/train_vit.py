"""Train a small ViT image classifier by knowledge distillation from a CNN teacher.

    python -m training.train_vit --recipe training/recipes/gender.toml --out models/gender-vit

Recipe (TOML) sections: [model] architecture + labels + normalisation, [data] splits,
[teacher] kind + path of the teacher file, [augment] fixed augmented views, [train]
optimisation. See training/README.md.

Method (DeiT-style soft distillation with "consistent teaching"):
  * every training image is decoded once, and ``views_per_image`` augmented views
    (view 0 = the plain resized image, view 1 its mirror, the rest random
    resized crops / flips / occasional grayscale) are generated with a seeded RNG at the
    student's input size;
  * the teacher is run ONCE over all views and its probabilities are cached
    (``.npy`` under [data].cache_dir), so the teacher always sees exactly the view the
    student sees;
  * loss = alpha * CE(label, label smoothing) + (1 - alpha) * T^2 * KL(teacher_T || student_T)
    for labeled images, and only the KD term for unlabeled extra images;
  * AdamW, linear warm-up + cosine decay, gradient clipping, one CPU thread, fixed seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import tomllib
from pathlib import Path

os.environ.setdefault("USE_TF", "0")

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data import datasets_root, list_split, load_images
from .teachers import TeacherMissing, make_teacher


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_recipe(path: str | Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


# --------------------------------------------------------------------------- views
def make_views(src: np.ndarray, k: int, size: int, aug: dict, rng: np.random.Generator) -> np.ndarray:
    """[N, k, size, size, 3] uint8 views of the uint8 [N, S, S, 3] source images."""
    n, s = src.shape[0], src.shape[1]
    out = np.empty((n, k, size, size, 3), dtype=np.uint8)
    smin = float(aug.get("crop_scale_min", 0.75))
    rmax = float(aug.get("crop_ratio_max", 1.1))
    p_gray = float(aug.get("grayscale_p", 0.0))
    for i in range(n):
        im = Image.fromarray(src[i])
        for v in range(k):
            if v < 2:
                box = (0, 0, s, s)
                flip = v == 1
                gray = False
            else:
                area = rng.uniform(smin, 1.0) * s * s
                ratio = math.exp(rng.uniform(-math.log(rmax), math.log(rmax)))
                w = min(s, math.sqrt(area * ratio))
                h = min(s, math.sqrt(area / ratio))
                x0 = rng.uniform(0, s - w)
                y0 = rng.uniform(0, s - h)
                box = (x0, y0, x0 + w, y0 + h)
                flip = bool(rng.random() < 0.5)
                gray = bool(rng.random() < p_gray)
            view = im.resize((size, size), resample=Image.BILINEAR, box=box)
            if flip:
                view = view.transpose(Image.FLIP_LEFT_RIGHT)
            if gray:
                view = view.convert("L").convert("RGB")
            out[i, v] = np.asarray(view)
    return out


def build_pool(name: str, split_dirs: list[Path], labels: list[str] | None, recipe: dict,
               teacher_factory, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views [N,K,S,S,3], teacher probs [N,K,C], labels [N] (or -1) for one pool, cached."""
    data, aug, model = recipe["data"], recipe["augment"], recipe["model"]
    size = int(model["image_size"])
    k = int(aug["views_per_image"] if labels is not None else aug.get("unlabeled_views_per_image", 2))
    src_size = int(aug.get("source_size", size))
    paths, ys = [], []
    for d in split_dirs:
        p, y = list_split(d, labels)
        paths += p
        ys.append(y)
    ys = np.concatenate(ys)
    cache_dir = data.get("cache_dir")
    key_src = json.dumps([str(p) for p in paths] + [size, k, src_size, aug, seed, recipe["teacher"]["kind"]],
                         sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    vpath = Path(cache_dir) / f"views-{name}-{key}.npy" if cache_dir else None
    tpath = Path(cache_dir) / f"teacher-{name}-{key}.npy" if cache_dir else None
    if vpath is not None and vpath.exists() and tpath.exists():
        log(f"{name}: loading cached views + teacher probs ({vpath.name})")
        return np.load(vpath), np.load(tpath), ys
    t0 = time.time()
    src = load_images(paths, src_size, cache_dir)
    log(f"{name}: decoded {len(paths)} images at {src_size}px in {time.time() - t0:.0f}s")
    t0 = time.time()
    views = make_views(src, k, size, aug, np.random.default_rng(seed))
    log(f"{name}: made {k} views/image in {time.time() - t0:.0f}s")
    t0 = time.time()
    teacher = teacher_factory()
    probs = teacher.probs(views.reshape(-1, size, size, 3)).reshape(len(paths), k, -1)
    log(f"{name}: teacher over {len(paths) * k} views in {time.time() - t0:.0f}s")
    if labels is not None:
        log(f"{name}: teacher accuracy on plain view {float((probs[:, 0].argmax(1) == ys).mean()):.4f}, "
            f"all views {float((probs.argmax(2) == ys[:, None]).mean()):.4f}")
    if vpath is not None:
        vpath.parent.mkdir(parents=True, exist_ok=True)
        np.save(vpath, views)
        np.save(tpath, probs)
    return views, probs, ys


# --------------------------------------------------------------------------- model
def build_model(recipe: dict):
    from transformers import ViTConfig, ViTForImageClassification

    m = recipe["model"]
    labels = list(m["labels"])
    cfg = ViTConfig(
        image_size=int(m["image_size"]),
        patch_size=int(m["patch_size"]),
        num_channels=3,
        hidden_size=int(m["hidden_size"]),
        num_hidden_layers=int(m["num_hidden_layers"]),
        num_attention_heads=int(m["num_attention_heads"]),
        intermediate_size=int(m["intermediate_size"]),
        hidden_act="gelu",
        hidden_dropout_prob=float(m.get("hidden_dropout_prob", 0.0)),
        attention_probs_dropout_prob=float(m.get("attention_probs_dropout_prob", 0.0)),
        qkv_bias=True,
        num_labels=len(labels),
        id2label={i: name for i, name in enumerate(labels)},
        label2id={name: i for i, name in enumerate(labels)},
    )
    if cfg.image_size % cfg.patch_size:
        raise ValueError("image_size must be divisible by patch_size")
    return ViTForImageClassification(cfg)


@torch.no_grad()
def mimetic_init(model, a1: float, b1: float, a2: float, b2: float, gen: torch.Generator) -> None:
    """Mimetic initialisation of self-attention (Trockman & Kolter, 2023).

    Per head, W_q^T W_k ~ a1*Z + b1*I (tokens attend to similar tokens / nearby positions), and
    per layer W_o W_v ~ a2*Z - b2*I, Z ~ N(0, 1/d). Only the initial weights change; the
    architecture and operators are plain ViT. Helps small ViTs trained from scratch on small data.
    """
    vit = model.vit
    d = vit.config.hidden_size
    heads = vit.config.num_attention_heads
    dh = d // heads
    for layer in vit.encoder.layer:
        att = layer.attention.attention
        for h in range(heads):
            m = a1 * torch.randn(d, d, generator=gen) / math.sqrt(d) + b1 * torch.eye(d)
            u, sv, vt = torch.linalg.svd(m)
            r = torch.sqrt(sv[:dh])
            att.query.weight[h * dh : (h + 1) * dh] = (u[:, :dh] * r).T
            att.key.weight[h * dh : (h + 1) * dh] = (vt[:dh].T * r).T
        m = a2 * torch.randn(d, d, generator=gen) / math.sqrt(d) - b2 * torch.eye(d)
        u, sv, vt = torch.linalg.svd(m)
        r = torch.sqrt(sv)
        att.value.weight.copy_(r[:, None] * vt)
        layer.attention.output.dense.weight.copy_(u * r)


@torch.no_grad()
def sincos_pos_init(model, scale: float) -> None:
    """Initialise the (still learned) position embeddings with 2-D sin-cos values (MAE-style)."""
    emb = model.vit.embeddings.position_embeddings  # [1, 1 + g*g, d]
    d = emb.shape[-1]
    g = int(round(math.sqrt(emb.shape[1] - 1)))
    q = d // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float32) / q)
    ys, xs = torch.meshgrid(torch.arange(g, dtype=torch.float32), torch.arange(g, dtype=torch.float32), indexing="ij")
    out_y = ys.reshape(-1, 1) * omega
    out_x = xs.reshape(-1, 1) * omega
    pe = torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)
    pe = torch.nn.functional.pad(pe, (0, d - pe.shape[1]))
    emb.zero_()
    emb[0, 1:] = scale * pe


def save_processor(recipe: dict, out: Path) -> None:
    from transformers import ViTImageProcessor

    m = recipe["model"]
    ViTImageProcessor(
        do_convert_rgb=True,  # FER2013 files are grayscale; the model takes 3 channels
        do_resize=True,
        size={"height": int(m["image_size"]), "width": int(m["image_size"])},
        resample=2,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(m["image_mean"]),
        image_std=list(m["image_std"]),
    ).save_pretrained(out)


def to_input(batch_u8: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(batch_u8).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


@torch.no_grad()
def accuracy(model, images: np.ndarray, ys: np.ndarray, mean, std, batch: int = 256) -> float:
    model.eval()
    pred = []
    for i in range(0, len(images), batch):
        pred.append(model(pixel_values=to_input(images[i : i + batch], mean, std)).logits.argmax(1).numpy())
    model.train()
    return float((np.concatenate(pred) == ys).mean())


class Sampler:
    """Endless epoch-shuffled sampling of (image, random view) pairs from one pool."""

    def __init__(self, n: int, k: int, rng: np.random.Generator):
        self.n, self.k, self.rng = n, k, rng
        self.order = rng.permutation(n)
        self.pos = 0
        self.epochs = 0

    def take(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        idx = []
        while len(idx) < b:
            if self.pos >= self.n:
                self.order = self.rng.permutation(self.n)
                self.pos = 0
                self.epochs += 1
            t = min(b - len(idx), self.n - self.pos)
            idx.extend(self.order[self.pos : self.pos + t])
            self.pos += t
        idx = np.asarray(idx)
        return idx, self.rng.integers(0, self.k, size=b)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Distil a small ViT classifier (see training/README.md)")
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--teacher", help="teacher file (overrides [teacher].path)")
    ap.add_argument("--steps", type=int, help="override [train].steps (smoke tests)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=TOML_VALUE",
                    help="override a recipe value, e.g. --set train.lr=5e-4 (pilot runs)")
    args = ap.parse_args(argv)

    recipe = load_recipe(args.recipe)
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        recipe.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
    if args.steps:
        recipe["train"]["steps"] = args.steps
    torch.set_num_threads(args.threads)
    tr, m = recipe["train"], recipe["model"]
    seed = int(tr["seed"])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = list(m["labels"])
    root = datasets_root(recipe["data"].get("root"))

    tpath = args.teacher or recipe["teacher"]["path"]
    tkind = recipe["teacher"]["kind"]
    try:  # fail before any expensive work
        make_teacher(tkind, tpath, labels)
    except TeacherMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def teacher_factory():
        return make_teacher(tkind, tpath, labels)

    t_start = time.time()
    lv, lt, ly = build_pool("labeled", [root / d for d in recipe["data"]["train"]], labels, recipe,
                            teacher_factory, seed)
    holdout = None
    n_hold = int(recipe["data"].get("holdout", 0))
    if n_hold:  # pilot runs: keep some labeled train images out of training, monitor on them
        perm = np.random.default_rng(seed + 7).permutation(len(ly))
        hold, keep = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
        holdout = (lv[hold, 0], ly[hold])
        lv, lt, ly = lv[keep], lt[keep], ly[keep]
    pools = [("labeled", lv, lt, ly)]
    if recipe["data"].get("unlabeled"):
        uv, ut, uy = build_pool("unlabeled", [root / d for d in recipe["data"]["unlabeled"]], None, recipe,
                                teacher_factory, seed + 1)
        pools.append(("unlabeled", uv, ut, uy))
    prep_s = time.time() - t_start

    monitor = None
    if recipe["data"].get("monitor"):
        mp, my = list_split(root / recipe["data"]["monitor"], labels)
        monitor = (load_images(mp, int(m["image_size"]), recipe["data"].get("cache_dir")), my)

    model = build_model(recipe)
    if m.get("init") == "mimetic":
        a1, b1, a2, b2 = m.get("mimetic", [0.7, 0.7, 0.4, 0.4])
        mimetic_init(model, a1, b1, a2, b2, torch.Generator().manual_seed(seed))
        log(f"mimetic attention init ({a1}, {b1}, {a2}, {b2})")
    if m.get("pos_init") == "sincos2d":
        sincos_pos_init(model, float(m.get("pos_init_scale", 0.2)))
        log(f"2-D sin-cos position embedding init (scale {m.get('pos_init_scale', 0.2)})")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.3f}M parameters")
    mean = torch.tensor(m["image_mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(m["image_std"], dtype=torch.float32).view(1, 3, 1, 1)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embeddings" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(tr["weight_decay"])}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(tr["lr"]), betas=(0.9, 0.999),
    )
    steps, warmup = int(tr["steps"]), int(tr["warmup_steps"])
    min_lr_ratio = float(tr.get("min_lr_ratio", 0.01))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    bs = int(tr["batch_size"])
    frac_unl = float(recipe["data"].get("unlabeled_fraction", 0.0)) if len(pools) > 1 else 0.0
    b_unl = int(round(bs * frac_unl))
    b_lab = bs - b_unl
    samplers = [Sampler(len(pools[0][3]), pools[0][1].shape[1], rng)]
    if b_unl:
        samplers.append(Sampler(len(pools[1][3]), pools[1][1].shape[1], rng))
    alpha, temp, ls = float(tr["alpha"]), float(tr["temperature"]), float(tr["label_smoothing"])
    clip = float(tr.get("grad_clip", 1.0))
    log_every, eval_every = int(tr.get("log_every", 100)), int(tr.get("eval_every", 0))

    history = []
    t_train = time.time()
    run_loss = run_acc = run_n = 0.0
    model.train()
    for step in range(steps):
        xs, ts, ys = [], [], []
        for (name, views, tprobs, yl), smp, b in zip(pools, samplers, [b_lab, b_unl]):
            if b == 0:
                continue
            idx, vi = smp.take(b)
            xs.append(views[idx, vi])
            ts.append(tprobs[idx, vi])
            ys.append(yl[idx])
        x = to_input(np.concatenate(xs), mean, std)
        t_prob = torch.from_numpy(np.concatenate(ts)).clamp_min(1e-7)
        y = torch.from_numpy(np.concatenate(ys))
        logits = model(pixel_values=x).logits
        t_logit = t_prob.log()
        kd = F.kl_div(F.log_softmax(logits / temp, 1), F.softmax(t_logit / temp, 1), reduction="batchmean") * temp**2
        lab = y >= 0
        ce = F.cross_entropy(logits[lab], y[lab], label_smoothing=ls) if lab.any() else logits.sum() * 0
        loss = alpha * ce + (1 - alpha) * kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        run_loss += loss.item()
        run_acc += float((logits[lab].argmax(1) == y[lab]).float().mean()) if lab.any() else 0.0
        run_n += 1
        if (step + 1) % log_every == 0 or step + 1 == steps:
            el = time.time() - t_train
            rate = (step + 1) * bs / el
            eta = (steps - step - 1) * bs / rate
            rec = {"step": step + 1, "loss": run_loss / run_n, "train_acc": run_acc / run_n,
                   "lr": sched.get_last_lr()[0], "img_per_s": rate, "elapsed_s": el,
                   "labeled_epochs": samplers[0].epochs + samplers[0].pos / samplers[0].n}
            msg = (f"step {step + 1}/{steps} loss {rec['loss']:.4f} train_acc {rec['train_acc']:.3f} "
                   f"lr {rec['lr']:.2e} {rate:.0f} img/s ep {rec['labeled_epochs']:.2f} eta {eta / 60:.1f} min")
            if monitor is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
                rec["monitor_acc"] = accuracy(model, monitor[0], monitor[1], mean, std)
                msg += f" | monitor({recipe['data']['monitor']}) acc {rec['monitor_acc']:.4f}"
            if holdout is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
                rec["holdout_acc"] = accuracy(model, holdout[0], holdout[1], mean, std)
                msg += f" | holdout({len(holdout[1])} train imgs) acc {rec['holdout_acc']:.4f}"
            log(msg)
            history.append(rec)
            run_loss = run_acc = run_n = 0.0
    train_s = time.time() - t_train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    save_processor(recipe, out)
    summary = {
        "recipe": recipe,
        "recipe_file": str(args.recipe),
        "teacher_file": str(tpath),
        "parameters": n_params,
        "data_prep_seconds": round(prep_s, 1),
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t_start, 1),
        "threads": args.threads,
        "torch": torch.__version__,
        "labeled_images": int(len(ly)),
        "unlabeled_images": int(len(pools[1][3])) if len(pools) > 1 else 0,
        "history": history,
    }
    (out / "training_log.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    log(f"saved {out} (train {train_s / 60:.1f} min, total {summary['total_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
