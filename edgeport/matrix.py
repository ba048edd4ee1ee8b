"""The compatibility matrix: every supported architecture through every variant, validated.

For each architecture in ``edgeport.architectures`` a small model is built, given weights with
a realistic output spread by a short, seeded training run on real faces (random weights give
near-constant predictions, so agreement on them would say little), exported to every variant
and validated like any user's model. The result is ``matrix.json`` and a Markdown page
(``docs/compatibility.md`` for ``make matrix``): architecture x variant, pass or fail and why,
with max abs diff, agreement, size and latency, and the date and machine.
"""
from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import __version__
from edgeport.architectures import ARCHITECTURES, make_model
from edgeport.portable import relative_path


def log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class MatrixOptions:
    out_dir: Path
    eval_dir: Path
    calibration_dir: Path
    train_dir: Path | None  # None: random weights
    variants: Sequence[str]
    archs: Sequence[str] = field(default_factory=lambda: list(ARCHITECTURES))
    budgets: Any = None  # dict[str, Budget]
    run_settings: Any = None  # validation.harness.RunSettings
    train_steps: int = 600
    train_images: int = 2000
    doc: Path | None = None
    project_dir: Path | None = None
    progress: bool = True
    isolate: bool = True  # each export step in its own process (edgeport.pipeline.export_model)


def train_quickly(model_dir: Path, train_dir: Path, *, steps: int, max_images: int, seed: int = 0,
                  batch: int = 32, lr: float = 2e-3, input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Fine-tune the model in ``model_dir`` on real images for ``steps`` steps; save it in place.

    Seeded and deterministic on one machine: the images are an evenly spaced sample of
    ``train_dir``'s class folders, read through the model's own preprocessing (at ``input_size``,
    as the export will read them, for a processor that fixes no size).
    """
    import torch
    import transformers

    from edgeport.model_source import read_labels
    from edgeport.validation.dataset import load_eval_arrays, scan_eval_set

    labels = read_labels(model_dir / "config.json")
    eval_set = scan_eval_set(train_dir, labels)
    if len(eval_set.samples) > max_images:  # an even spread over the sorted list keeps every class
        step = len(eval_set.samples) / max_images
        eval_set.samples = [eval_set.samples[int(i * step)] for i in range(max_images)]
    pre = _preprocessing(model_dir, input_size)
    x, y, _ = load_eval_arrays(eval_set, pre, progress=False)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = transformers.AutoModelForImageClassification.from_pretrained(str(model_dir))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    start, losses = time.perf_counter(), []
    for _ in range(steps):
        idx = rng.integers(0, len(x), batch)
        images = torch.from_numpy(x[idx])
        flip = torch.from_numpy(rng.random(batch) < 0.5)
        images[flip] = images[flip].flip(-1)  # horizontal flips: faces are symmetric enough
        loss = torch.nn.functional.cross_entropy(model(pixel_values=images).logits, torch.from_numpy(y[idx]).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    model.config.edgeport_random_weights = False
    info = {"train_dir": train_dir.name, "images": int(len(x)), "steps": steps, "batch": batch, "lr": lr,
            "seed": seed, "final_loss": round(float(np.mean(losses[-20:])), 4),
            "seconds": round(time.perf_counter() - start, 1)}
    model.config.edgeport_matrix_training = info
    model.save_pretrained(model_dir, safe_serialization=True)
    return info


def _preprocessing(model_dir: Path, input_size: tuple[int, int] | None) -> Any:
    """The model's preprocessing; with ``input_size``, that of a copy of its processor file fixed to it."""
    import tempfile

    from edgeport.validation.preprocess import Preprocessing, fix_input_size

    if not input_size:
        return Preprocessing.from_file(model_dir / "preprocessor_config.json")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "preprocessor_config.json"
        shutil.copyfile(model_dir / "preprocessor_config.json", copy)
        fix_input_size(copy, input_size)
        return Preprocessing.from_file(copy)


def run_matrix(opts: MatrixOptions) -> dict[str, Any]:
    """Build, (train,) export and validate every architecture; write matrix.json and the page."""
    from edgeport.bench import machine_info
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import export_model, validate_export

    opts.out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "edgeport_version": __version__,
        "machine": machine_info(), "variants": list(opts.variants),
        "eval_dir": relative_path(opts.eval_dir, opts.project_dir or Path.cwd()),
        "weights": (f"{opts.train_steps} training steps on {opts.train_images} images of "
                    f"{relative_path(opts.train_dir, opts.project_dir or Path.cwd())}"
                    if opts.train_dir else "random weights"),
        "architectures": [],
    }
    start = time.perf_counter()
    for i, arch in enumerate(opts.archs, 1):
        spec = ARCHITECTURES[arch]
        log(f"matrix: ({i}/{len(opts.archs)}) {arch}")
        folder = opts.out_dir / arch
        shutil.rmtree(folder, ignore_errors=True)
        row: dict[str, Any] = {"arch": arch, "processor": spec.processor, "note": spec.note, "variants": []}
        try:
            model_dir = make_model(arch, folder / "model")
            if opts.train_dir:
                row["training"] = train_quickly(model_dir, opts.train_dir, steps=opts.train_steps,
                                                max_images=opts.train_images, lr=spec.train_lr,
                                                input_size=spec.input_size)
                log(f"matrix:   trained in {row['training']['seconds']} s (loss {row['training']['final_loss']})")
            t0 = time.perf_counter()
            exported = export_model(arch, resolve_source(str(model_dir)), folder / "export", variants=opts.variants,
                                    images_dir=None, calibration_dir=opts.calibration_dir, eval_dir=opts.eval_dir,
                                    project_dir=opts.project_dir, progress=opts.progress, isolate=opts.isolate,
                                    budgets=opts.budgets,  # the int8 search aims at the budgets validated below
                                    input_size=spec.input_size)
            row["export_seconds"] = round(time.perf_counter() - t0, 1)
            report = validate_export(folder / "export", opts.eval_dir, opts.budgets or {}, opts.run_settings,
                                     progress=opts.progress)
        except Exception as exc:  # one architecture that breaks must not cost the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
            log(f"matrix:   {arch} failed: {row['error']}")
            result["architectures"].append(row)
            continue
        records = {v["name"]: v for v in exported.manifest["variants"]}
        row["reference_accuracy"] = report["reference"]["accuracy"]
        row["parameters"] = _parameters(model_dir)
        for v in report["variants"]:
            settings = records[v["name"]].get("settings") or {}
            row["variants"].append({
                "name": v["name"], "passed": v["passed"], "max_abs_diff": v["max_abs_diff"],
                "agreement": v["agreement"], "accuracy_drift_points": v["accuracy_drift_points"],
                "size_bytes": v["size_bytes"], "p50_ms": (v["latency_ms"] or {}).get("p50"),
                "why": "; ".join(f["message"] for f in v["failures"])[:300] or None,
                "made_by": settings.get("backend") or settings.get("exporter"),
                "search": search_summary(settings),
            })
        result["architectures"].append(row)
    result["seconds"] = round(time.perf_counter() - start, 1)
    (opts.out_dir / "matrix.json").write_text(json.dumps(result, indent=2) + "\n")
    page = render_markdown(result)
    (opts.out_dir / "compatibility.md").write_text(page)
    if opts.doc:  # outside this repository, docs/ may not exist yet: the run must not fail at its end
        opts.doc.parent.mkdir(parents=True, exist_ok=True)
        opts.doc.write_text(page)
    return result


def _parameters(model_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "np") as f:
        return int(sum(np.prod(f.get_slice(k).get_shape()) for k in f.keys()))


# What is known about an architecture's misses, printed under its table when it has any.
KNOWN_MISSES: dict[str, str] = {
    "pvt": "transformers 4.57.6's PvtConfig sets num_labels=1000 after reading id2label, so a fine-tuned "
           "PVT saved with save_pretrained reloads with a 1000-class head and from_pretrained fails (size "
           "mismatch): transformers itself cannot load the trained model. PVTv2 is not affected.",
}


def search_summary(settings: dict[str, Any]) -> dict[str, Any] | None:
    """What the int8 precision search saw on held-out calibration images, for the page's reasons:
    the file it chose (raised, held-out figures) and whether that file passed there."""
    search = settings.get("precision_search")
    if not search:
        return None
    chosen = next((r for r in search.get("rounds", []) if r.get("chosen")), None) or {}
    return {"holdout_images": search.get("holdout_images"), "passed_on_holdout": search.get("passed_on_holdout"),
            "rounds": len(search.get("rounds", [])), "candidates": search.get("candidates"),
            "raised": [r["name"] for r in search.get("raised", [])], "raised_to": search.get("raised_to"),
            "agreement": chosen.get("agreement"), "agreement_lower": chosen.get("agreement_lower"),
            "accuracy_drop": chosen.get("accuracy_drop")}


def explain_search(name: str, s: dict[str, Any]) -> str:
    """A failed int8 variant's reason, in words, from its ``search_summary``."""
    raised = (f"{len(s['raised'])} of {s['candidates']} raised to {s['raised_to']} ({', '.join(s['raised'][:6])}"
              + (", ..." if len(s["raised"]) > 6 else "") + ")") if s["raised"] else "nothing raised"
    drop = "" if s["accuracy_drop"] is None else f", accuracy drop {s['accuracy_drop']:+.2f} points"
    seen = (f"held-out agreement {s['agreement'] * 100:.1f}% (Wilson lower bound {s['agreement_lower'] * 100:.1f}%)"
            f"{drop}")
    if s["passed_on_holdout"]:
        return (f"`{name}`: the precision search's file ({raised}) passed on its {s['holdout_images']} held-out "
                f"calibration images ({seen}) and misses on the evaluation images above: on "
                f"{s['holdout_images']} images one image is {100 / s['holdout_images']:.2f} points of accuracy, so "
                "a file within a 1-point budget there can miss it on another sample.")
    return (f"`{name}`: no file of the precision search's {s['rounds']} rounds passed on its "
            f"{s['holdout_images']} held-out calibration images; it kept the best one, {raised}: {seen}.")


# What a reader must know about an architecture's figures, printed under its table always.
CAVEATS: dict[str, str] = {
    "efficientnet": "This tiny EfficientNet (width and depth coefficients 0.1) learns nothing in the short "
                    "training: its activations vanish after the stem and every image gets the same logits "
                    "(accuracy 50.0%), so its agreement figures are met trivially; its max abs diffs are the "
                    "meaningful ones.",
}


def _cell(v: dict[str, Any]) -> str:
    if v["passed"]:
        return "pass"
    return "**FAIL**"


def render_markdown(r: dict[str, Any]) -> str:
    """The compatibility page: a pass/fail grid, then each architecture's figures and reasons."""
    variants = r["variants"]
    short = {name: name.replace("savedmodel", "sm").replace("-dynamic", "-dyn") for name in variants}
    lines = [
        "# Compatibility matrix",
        "",
        f"{r['date']} · edgeport {r['edgeport_version']} · {r['machine']['cpu']} · {r['machine']['cores']} cores · "
        f"Python {r['machine']['python']} · {platform.system()} · {r['seconds'] / 60:.1f} min",
        "",
        f"Made by `edgeport matrix` (`make matrix`). Each architecture is a small model built from "
        f"transformers' own config class (`edgeport/architectures.py`), with **{r['weights']}** (seeded), "
        f"exported to every variant and validated on `{r['eval_dir']}` against its PyTorch reference, "
        "with the default budgets (fp32: top-1 agreement 100% and max abs logit diff <= 1e-4; fp16: 99.5%, "
        "-0.5 points; int8: 97%, -1 point).",
        "",
        "| architecture | " + " | ".join(short[v] for v in variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for row in r["architectures"]:
        if row.get("error"):
            lines.append(f"| {row['arch']} | " + " | ".join("–" for _ in variants) + " |")
            continue
        cells = {v["name"]: _cell(v) for v in row["variants"]}
        lines.append(f"| {row['arch']} | " + " | ".join(cells.get(v, "–") for v in variants) + " |")
    passed = sum(v["passed"] for row in r["architectures"] for v in row.get("variants", []))
    total = sum(len(row.get("variants", [])) for row in r["architectures"])
    lines += ["", f"{passed} of {total} architecture x variant cells pass.", ""]
    for row in r["architectures"]:
        lines += [f"## {row['arch']}", ""]
        if row.get("error"):
            lines += [f"Not run to the end: {row['error']}", ""]
            if row["arch"] in KNOWN_MISSES:
                lines += [f"Why: {KNOWN_MISSES[row['arch']]}", ""]
            continue
        train = row.get("training")
        lines.append(f"{row['processor']}, {row['parameters']:,} parameters"
                     + (f", trained {train['steps']} steps in {train['seconds']} s (final loss {train['final_loss']})"
                        if train else "") + f"; reference accuracy {row['reference_accuracy'] * 100:.1f}%"
                     + (f". {row['note']}" if row["note"] else "") + ".")
        lines += ["", "| variant | status | max abs diff | agreement | drift (points) | KB | p50 ms | made by | why |",
                  "|---|---|---:|---:|---:|---:|---:|---|---|"]
        for v in row["variants"]:
            def fmt(x: Any, f: str) -> str:
                return "–" if x is None else format(x, f)
            lines.append(f"| {v['name']} | {'pass' if v['passed'] else '**FAIL**'} | {fmt(v['max_abs_diff'], '.1e')} | "
                         f"{fmt(None if v['agreement'] is None else v['agreement'] * 100, '.1f')} | "
                         f"{fmt(v['accuracy_drift_points'], '+.2f')} | "
                         f"{fmt(None if v['size_bytes'] is None else v['size_bytes'] / 1024, '.0f')} | "
                         f"{fmt(v['p50_ms'], '.2f')} | {v.get('made_by') or ''} | {(v['why'] or '').replace('|', '/')} |")
        if row["arch"] in KNOWN_MISSES and not all(v["passed"] for v in row["variants"]):
            lines += ["", f"Why: {KNOWN_MISSES[row['arch']]}"]
        for v in row["variants"]:
            if not v["passed"] and v.get("search"):
                lines += ["", f"Why: {explain_search(v['name'], v['search'])}"]
        if row["arch"] in CAVEATS:
            lines += ["", f"Note: {CAVEATS[row['arch']]}"]
        lines.append("")
    return "\n".join(lines) + "\n"
