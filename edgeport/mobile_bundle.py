"""The mobile hand-off: artifacts/<model>/mobile/ with everything an app developer needs.

    mobile/
      model_fp32.tflite ...   the TFLite variants (fp32, fp16, int8-dynamic, int8, int8-io) that exported
      labels.txt              one label per line, in output order
      model.json              per file: input/output name, shape, layout, dtype, int8 scale and
                              zero point, size, sha256, accuracy/drift/latency from the report;
                              preprocessing, output meaning, labels, source and its sha256;
                              which file to use on which hardware (which_file), from the report
      README.md               model card with the which-file table, Kotlin and Swift snippets
      SHA256SUMS              `sha256sum -c SHA256SUMS` verifies every file above

Written from the manifest (what was exported) and the report (how it did), after
validation. Labels and normalization are not embedded as TFLite metadata. tflite-support's
metadata writers have no release for this Python and TensorFlow. MediaPipe 1.2.2 ships the
same writers (`mediapipe.tasks.python.metadata.metadata_writers.image_classifier`), but
importing them fails: they need the native `mediapipe.tasks.cc.metadata` module, which is
not in the wheel (tried 2026-11-23). So model.json carries the metadata instead, and the
model card says so.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgeport.converters.atomic import atomic_path
from edgeport import __version__
from edgeport.model_source import is_multi_label
from edgeport.converters.checksums import artifact_sha256, sha256_file
from edgeport.validation.harness import artifact_size

BUNDLE = "mobile"
# the variants an app developer gets, in the order the card lists them
MOBILE_VARIANTS = ("tflite-fp32", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8", "tflite-int8-io",
                   "executorch-fp32", "executorch-int8", "coreml-fp16", "coreml-fp32")
# ExecuTorch programs (.pte) are for apps that link the ExecuTorch runtime instead of LiteRT.
EXECUTORCH_VARIANTS = ("executorch-fp32", "executorch-int8")
# Core ML packages (.mlpackage folders), for iOS/macOS apps; checked here, run only on Apple's OSes.
# fp16 first: the Neural Engine computes in fp16, and the file is half the size.
COREML_VARIANTS = ("coreml-fp16", "coreml-fp32")
# Which file each kind of hardware gets first, among those that passed their budget. CPU is
# not listed: it gets whichever passed file was fastest on the export machine.
GPU_PREFERENCE = ("tflite-fp16", "tflite-fp32")  # the GPU delegate computes in fp16 from float weights
NPU_PREFERENCE = ("tflite-int8", "tflite-int8-io")  # integer-only files; int8-io for int8 camera input


def write_mobile_bundle(out_dir: Path, manifest: dict[str, Any], report: dict[str, Any]) -> Path | None:
    """Write ``out_dir/mobile/`` (replacing it whole); None when no mobile variant exported."""
    exported = {v["name"]: v for v in manifest["variants"] if v["status"] == "ok"}
    wanted = [name for name in MOBILE_VARIANTS if name in exported]
    if not wanted:
        return None
    results = {v["name"]: v for v in report.get("variants", [])}
    multi_label = is_multi_label(out_dir / "config.json")
    final = out_dir / BUNDLE
    # built in a hidden sibling and renamed in whole: a reader never sees a half-written bundle
    with atomic_path(final, directory=True) as tmp:
        files = []
        for name in wanted:
            record = exported[name]
            src = out_dir / record["path"]
            if src.is_dir():  # an .mlpackage is a folder
                shutil.copytree(src, tmp / src.name)
            else:
                shutil.copyfile(src, tmp / src.name)
            files.append(_file_entry(name, record, results.get(name), tmp / src.name))
        labels = manifest["labels"]
        (tmp / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
        model = {
            "edgeport_version": __version__,
            "model": manifest["model"],
            "source": {k: manifest["source"].get(k) for k in ("id", "path", "revision", "weights_sha256", "random_weights")
                       if k in manifest["source"]},
            "labels": labels,
            "preprocessing": {**preprocessing_spec(manifest["preprocessing"]),
                              **({"input_size_fixed_at_export": manifest["input_size"]}
                                 if manifest.get("input_size") else {})},
            "output": {"kind": "logits", "shape": [1, len(labels)],
                       "to_probabilities": ("sigmoid of each logit (multi-label: every label whose probability is "
                                            "above 0.5 applies, as validated)" if multi_label else
                                            "softmax over the last axis; argmax gives the label index in labels.txt"),
                       "multi_label": multi_label},
            "evaluation": {"images": report.get("eval_set", {}).get("images"),
                           "reference_accuracy": report.get("reference", {}).get("accuracy"),
                           "latency_measured_on": (report.get("machine") or {}).get("model"),
                           "subgroups": report.get("reference", {}).get("subgroups")},
            "files": files,
            "which_file": which_file(files, (report.get("machine") or {}).get("model")),
            "tflite_metadata": "not embedded: labels and normalization are in this file and labels.txt",
        }
        (tmp / "model.json").write_text(json.dumps(model, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(model))
        # every file, those inside an .mlpackage folder by their relative path (sha256sum -c reads them)
        sums = [f"{sha256_file(p)}  {p.relative_to(tmp).as_posix()}\n" for p in sorted(tmp.rglob("*")) if p.is_file()]
        (tmp / "SHA256SUMS").write_text("".join(sums))
    return final


def preprocessing_spec(pre: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing spelled out for someone re-implementing it on a phone.

    ``pre`` is ``validation.preprocess.Preprocessing.to_dict()`` (older manifests lack the
    resize-mode, crop, offset and channel-order keys: they are exact resizes in RGB).
    """
    method = pre.get("resample_name", "bilinear")
    if not pre.get("do_resize", True):
        resize: dict[str, Any] = {"mode": "none"}
    elif pre.get("shortest_edge"):
        resize = {"mode": "shortest_edge", "shortest_edge": pre["shortest_edge"], "method": method,
                  "keep_aspect_ratio": True,
                  "rule": "the shorter side becomes shortest_edge, the longer one int(shortest_edge * long / short)"
                          + (f", at most {pre['longest_edge']}" if pre.get("longest_edge") else "")}
    else:
        h, w = list(pre.get("resize_to") or (pre["height"], pre["width"]))
        resize = {"mode": "exact", "height": h, "width": w, "method": method, "keep_aspect_ratio": False}
    resize["antialias"] = "PIL's filters (what the model was validated with) antialias when they shrink"
    crop = ({"height": pre["height"], "width": pre["width"],
             "rule": "top = (resized_height - height) // 2, left = (resized_width - width) // 2"}
            if pre.get("do_center_crop") else None)
    normalize = pre.get("do_normalize", True)
    offset = -1.0 if pre.get("rescale_offset") else 0.0
    extra = pre.get("extra_std")
    order = pre.get("channel_order", "RGB")
    formula = ("x = (pixel * rescale_factor" + (" - 1" if offset else "") + " - mean[c]) / std[c]"
               + (" / extra_std[c]" if extra else "") + ", pixel in 0..255, per channel c"
               + (", channels then reversed to BGR" if order == "BGR" else ""))
    spec = {
        "color": "RGB (EXIF orientation applied)",
        "resize": resize,
        "center_crop": crop,
        "rescale_factor": pre["rescale_factor"] if pre.get("do_rescale", True) else 1.0,
        "offset": offset,
        "mean": list(pre["image_mean"]) if normalize else [0.0, 0.0, 0.0],
        "std": list(pre["image_std"]) if normalize else [1.0, 1.0, 1.0],
        "channel_order": order,
        "formula": formula,
        "input": {"height": pre["height"], "width": pre["width"]},
        "layout": "NHWC: [1, height, width, 3] (the TFLite files take channels last)",
        "processor": pre.get("processor") or None,
    }
    if extra:
        spec["extra_std"] = list(extra)
    if pre.get("decode") == "draft":
        from edgeport.validation.preprocess import DRAFT_GAP

        spec["decode"] = {"mode": "draft", "gap": DRAFT_GAP,
                          "rule": f"a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both sides "
                                  f"at least {DRAFT_GAP}x the longer side it is resized to (libjpeg's scaled decoding: "
                                  "Android's BitmapFactory inSampleSize, PIL's Image.draft); other formats fully"}
    return spec


def _input_steps(pre: dict[str, Any]) -> str:
    """The card's one-paragraph description of the preprocessing, crop included."""
    r, crop = pre["resize"], pre["center_crop"]
    h, w = pre["input"]["height"], pre["input"]["width"]
    if r["mode"] == "shortest_edge":
        text = (f"RGB, resized so that the shorter side is {r['shortest_edge']} px and the longer one "
                f"`int({r['shortest_edge']} * long / short)` ({r['method']}, aspect ratio kept)")
    elif r["mode"] == "exact":
        text = f"RGB, resized to {r['width']}x{r['height']} ({r['method']}, aspect ratio not kept)"
    else:
        text = f"RGB, not resized (the image must already be {w}x{h})"
    if crop:
        text += f", then the central {w}x{h} cropped (`top = (height - {h}) // 2`, `left = (width - {w}) // 2`)"
    else:
        text += ", no crop"
    text += f", then per channel `{pre['formula'].split(', pixel')[0]}` with rescale_factor {pre['rescale_factor']:.6g}"
    text += f", mean {pre['mean']} and std {pre['std']}" + (f", extra_std {pre['extra_std']}" if pre.get("extra_std") else "")
    if pre["channel_order"] == "BGR":
        text += "; channels in **BGR** order"
    if pre.get("decode"):
        text = f"JPEGs decoded at a reduced scale first ({pre['decode']['rule']}); " + text
    return text + f"; layout NHWC `[1, {h}, {w}, 3]`, float32."


def _swift_normalize(pre: dict[str, Any]) -> list[str]:
    """Swift lines from `rgb` ([UInt8], RGB) to `input` ([Float]) in the file's channel order."""
    extra = pre.get("extra_std") or [1.0, 1.0, 1.0]
    off = " - 1" if pre["offset"] else ""
    lines = [f"let scaleStd: [Float] = [{', '.join(f'{v * extra[i]:.9g}' for i, v in enumerate(pre['std']))}]"]
    channel = "2 - i % 3" if pre["channel_order"] == "BGR" else "i % 3"
    if pre["channel_order"] == "BGR":
        lines.append("// the model takes BGR: write each pixel's channels reversed")
        lines.append("for p in stride(from: 0, to: rgb.count, by: 3) { for i in 0..<3 { let c = 2 - i; "
                     f"input.append((Float(rgb[p + c]) * {pre['rescale_factor']:.9g}{off} - mean[c]) / scaleStd[c]) }} }}")
    else:
        lines.append(f"for (i, v) in rgb.enumerated() {{ input.append((Float(v) * {pre['rescale_factor']:.9g}{off} "
                     f"- mean[{channel}]) / scaleStd[{channel}]) }}")
    return lines


def _kotlin_preprocess(pre: dict[str, Any]) -> list[str]:
    """Kotlin lines from `bitmap` to a filled `input` ByteBuffer, following the spec."""
    r, crop = pre["resize"], pre["center_crop"]
    h, w = pre["input"]["height"], pre["input"]["width"]
    lines = []
    if r["mode"] == "shortest_edge":
        e = r["shortest_edge"]
        lines += ["val portrait = bitmap.width <= bitmap.height",
                  "val longSide = maxOf(bitmap.width, bitmap.height); val shortSide = minOf(bitmap.width, bitmap.height)",
                  f"val newLong = {e} * longSide / shortSide  // int({e} * long / short)",
                  f"val resized = Bitmap.createScaledBitmap(bitmap, if (portrait) {e} else newLong, "
                  f"if (portrait) newLong else {e}, true)  // {r['method']} in the validated pipeline"]
    elif r["mode"] == "exact":
        lines.append(f"val resized = Bitmap.createScaledBitmap(bitmap, {r['width']}, {r['height']}, true)"
                     f"  // {r['method']} in the validated pipeline")
    else:
        lines.append("val resized = bitmap")
    if crop:
        lines.append(f"val scaled = Bitmap.createBitmap(resized, (resized.width - {w}) / 2, "
                     f"(resized.height - {h}) / 2, {w}, {h})  // centre crop")
    else:
        lines.append("val scaled = resized")
    mean = ", ".join(f"{m}f" for m in pre["mean"])
    extra = pre.get("extra_std") or [1.0, 1.0, 1.0]  # dividing twice = dividing by the product
    std = ", ".join(f"{v * extra[i]:.9g}f" for i, v in enumerate(pre["std"]))
    order = "intArrayOf(p and 0xFF, (p shr 8) and 0xFF, (p shr 16) and 0xFF)  // BGR" \
        if pre["channel_order"] == "BGR" else "intArrayOf((p shr 16) and 0xFF, (p shr 8) and 0xFF, p and 0xFF)"
    off = " - 1f" if pre["offset"] else ""
    mean_of = "mean[2 - c]" if pre["channel_order"] == "BGR" else "mean[c]"
    std_of = "std[2 - c]" if pre["channel_order"] == "BGR" else "std[c]"
    lines += [
        f"val input = ByteBuffer.allocateDirect(4 * {h} * {w} * 3).order(ByteOrder.nativeOrder())",
        f"val mean = floatArrayOf({mean}); val std = floatArrayOf({std})  // RGB order",
        f"for (y in 0 until {h}) for (x in 0 until {w}) {{",
        "    val p = scaled.getPixel(x, y)",
        f"    val px = {order}",
        f"    for (c in 0 until 3) input.putFloat((px[c] * {pre['rescale_factor']:.9g}f{off} - {mean_of}) / {std_of})",
        "}",
    ]
    return lines


def _file_entry(name: str, record: dict[str, Any], result: dict[str, Any] | None, path: Path) -> dict[str, Any]:
    io = record.get("io") or {}
    if name in EXECUTORCH_VARIANTS:  # a .pte takes float32 NCHW pixel values and returns float32 logits
        shape = (record.get("settings") or {}).get("input_shape")
        io = {"input": {"name": "pixel_values", "shape": shape, "dtype": "float32", "layout": "NCHW"},
              "output": {"name": "logits", "shape": None, "dtype": "float32"}}
    if name in COREML_VARIANTS:  # an image in, normalized inside; label and probabilities out
        made = (record.get("settings") or {}).get("input") or {}
        io = {"input": {"name": made.get("name", "image"), "shape": [1, made.get("height"), made.get("width"), 3],
                        "dtype": f"image ({made.get('color_layout', 'RGB')}, 0-255; normalized inside the model)",
                        "layout": "image"},
              "output": {"name": "classLabel, classLabel_probs", "shape": None, "dtype": "label and softmax probabilities"}}
    entry: dict[str, Any] = {
        "file": path.name,
        "variant": name,
        "precision": record["precision"],
        "size_bytes": artifact_size(path),
        "sha256": artifact_sha256(path),
        "input": _tensor(io.get("input"), is_input=True),
        "output": _tensor(io.get("output"), is_input=False),
    }
    activations = (record.get("settings") or {}).get("activations")
    if activations:  # the full-integer files: which integer kernels a phone's runtime or NPU needs
        entry["compute"] = {"weights": "int8", "activations": activations, "integer_only": True}
        search = (record.get("settings") or {}).get("precision_search")
        if search and search.get("raised"):  # what the precision search raised to int16, and why
            entry["compute"]["int16_op_kinds"] = [
                {"kind": r["name"], "ops": r.get("ops"), "sensitivity": r["sensitivity"]} for r in search["raised"]]
    elif name == "tflite-int8-dynamic":
        entry["compute"] = {"weights": "int8", "activations": "float32, quantized to int8 at run time per layer",
                            "integer_only": False}
    if result:
        latency = result.get("latency_ms") or {}
        entry.update(accuracy=result.get("accuracy"), accuracy_drift_points=result.get("accuracy_drift_points"),
                     agreement=result.get("agreement"), latency_ms_p50=latency.get("p50"),
                     passed_budget=result.get("passed"))
        if result.get("not_validated"):  # Core ML off macOS: checked, not run
            entry["not_validated"] = result["not_validated"]
        judged = [r for r in result.get("subgroups") or [] if r["judged"]]
        if judged:  # the subgroup this file loses most on, of those large enough to judge; None: none loses
            low = min(judged, key=lambda r: r["drift_points"])
            entry["worst_subgroup"] = ({k: low[k] for k in ("attribute", "value", "images", "drift_points")}
                                       if low["drift_points"] < 0 else None)
    return entry


def which_file(files: list[dict[str, Any]], machine: str | None) -> list[dict[str, Any]]:
    """Which file to use on which hardware, from the measured results of the bundle's files.

    CPU (LiteRT's XNNPACK delegate): the fastest file that passed its budget, as measured on
    the export machine. GPU delegate: fp16 (else fp32). Integer-only NPU/DSP: the full-integer
    files, with a caveat when their activations are int16 (an int8-only accelerator cannot run
    16x8 files). A row with no passing file says so rather than recommending a failed one.
    """
    passed = {f["variant"]: f for f in files if f.get("passed_budget")}
    on = f" on the export machine ({machine})" if machine else " on the export machine"
    timed = [f for f in passed.values() if f.get("latency_ms_p50") is not None and f["file"].endswith(".tflite")]
    rows = []
    cpu = min(timed, key=lambda f: f["latency_ms_p50"]) if timed else None
    rows.append({"hardware": "CPU (LiteRT's default XNNPACK delegate)", "files": [cpu["file"]] if cpu else [],
                 "why": (f"fastest file that passed its budget{on}: {cpu['latency_ms_p50']:.2f} ms p50 at batch 1; "
                         "re-measure on the phone") if cpu else "no file passed its budget"})
    gpu = next((passed[v] for v in GPU_PREFERENCE if v in passed), None)
    rows.append({"hardware": "GPU delegate", "files": [gpu["file"]] if gpu else [],
                 "why": ("float weights the GPU delegate computes in fp16; fp16 storage halves the download"
                         if gpu and gpu["variant"] == "tflite-fp16" else
                         "float file (the fp16 file did not pass its budget)" if gpu else
                         "no float file passed its budget")})
    npu = [passed[v] for v in NPU_PREFERENCE if v in passed]
    wide = any((f.get("compute") or {}).get("activations") in ("int16", "int8+int16") for f in npu)
    if not npu:
        why = "no full-integer file passed its budget"
    elif wide:
        why = ("integer-only, but with int16 activations (TFLite 16x8, in all ops or in the op kinds the precision "
               "search raised): only accelerators with 16x8 kernels run them; an int8-only NPU/DSP cannot")
    else:
        why = "integer-only int8 (int8 weights and activations); the int8-io file also takes int8 input and gives int8 logits"
    rows.append({"hardware": "integer-only NPU / DSP", "files": [f["file"] for f in npu], "why": why})
    if any(f["variant"] in EXECUTORCH_VARIANTS for f in files):
        pte = [passed[v] for v in EXECUTORCH_VARIANTS if v in passed and passed[v].get("latency_ms_p50") is not None]
        best = min(pte, key=lambda f: f["latency_ms_p50"]) if pte else None
        rows.append({"hardware": "ExecuTorch app (CPU, XNNPACK)", "files": [best["file"]] if best else [],
                     "why": (f"fastest .pte that passed its budget{on}: {best['latency_ms_p50']:.2f} ms p50 at batch 1"
                             if best else "no .pte file passed its budget")})
    coreml = [f for f in files if f["variant"] in COREML_VARIANTS]
    if coreml:
        first = sorted(coreml, key=lambda f: COREML_VARIANTS.index(f["variant"]))
        rows.append({"hardware": "iOS / macOS app (Core ML: Neural Engine, GPU or CPU)", "files": [first[0]["file"]],
                     "why": ("fp16: what the Neural Engine computes in, half the size of fp32" if first[0]["variant"] ==
                             "coreml-fp16" else "the only Core ML file exported")
                            + ". Not validated on the export machine (Core ML runs on macOS): check its accuracy "
                              "on a Mac before shipping; its structure and labels were checked"})
    return rows


def _tensor(details: dict[str, Any] | None, *, is_input: bool) -> dict[str, Any] | None:
    if not details:
        return None
    out = {"name": details["name"], "shape": details["shape"], "dtype": details["dtype"],
           "layout": details.get("layout", "NHWC") if is_input else "[batch, labels]"}
    if "scale" in details:
        out["quantization"] = {"scale": details["scale"], "zero_point": details["zero_point"]}
        out["how"] = ("q = clamp(round(x / scale) + zero_point, -128, 127) with x the normalized input"
                      if is_input else "logit = (q - zero_point) * scale")
    return out


def _subgroup_card(model: dict[str, Any]) -> list[str]:
    """The card's accuracy per evaluation subgroup (the reference's) and each file's worst subgroup."""
    rows = model["evaluation"].get("subgroups")
    if not rows:
        return []
    lines = ["", "## Accuracy per subgroup", "",
             "The reference model's accuracy on each subgroup of the evaluation images (95% Wilson interval; "
             "* too few images to judge a file against):", "",
             "| subgroup | images | reference accuracy |", "|---|---:|---|"]
    lines += [f"| {r['attribute']}={r['value']}{'' if r['judged'] else ' *'} | {r['images']} | "
              f"{r['accuracy'] * 100:.1f}% ({r['accuracy_ci'][0] * 100:.1f}-{r['accuracy_ci'][1] * 100:.1f}%) |"
              for r in rows]
    judged = [f for f in model["files"] if "worst_subgroup" in f]
    if judged:
        lines += ["", "Where each file loses most against the reference (judged subgroups): "
                  + "; ".join(f"`{f['file']}` " + (f"{w['attribute']}={w['value']} {w['drift_points']:+.2f} points"
                                                  if (w := f["worst_subgroup"]) else "none below the reference")
                              for f in judged) + "."]
    return lines


def model_card(model: dict[str, Any]) -> str:
    """README.md of the bundle: what the files are, how to feed them, Kotlin and Swift snippets."""
    pre = model["preprocessing"]
    h, w = pre["input"]["height"], pre["input"]["width"]
    mean, std = pre["mean"], pre["std"]
    src = model["source"]
    origin = src.get("id") or Path(src.get("path", "?")).name
    cpu_files = next((r["files"] for r in model["which_file"] if r["hardware"].startswith("CPU")), [])
    float_io = [f["file"] for f in model["files"]
                if (f["input"] or {}).get("dtype") == "float32" and f["file"].endswith(".tflite")]
    snippet_file = next((n for n in cpu_files if n in float_io), float_io[0] if float_io else "model_fp32.tflite")
    snippet_stem = snippet_file.rsplit(".", 1)[0]
    lines = [
        f"# {model['model']}: TFLite files for Android and iOS",
        "",
        f"Source: `{origin}`" + (f" at revision `{src['revision']}`" if src.get("revision") else "")
        + (f", weights sha256 `{src['weights_sha256'][:16]}…`" if src.get("weights_sha256") else "")
        + f". Exported and validated by edgeport {model['edgeport_version']}."
        + (" **Random weights: for testing only.**" if src.get("random_weights") else ""),
        "",
        f"Labels ({len(model['labels'])}, output order, also in `labels.txt`): {', '.join(model['labels'])}.",
        "",
        "| file | precision | input | MB | accuracy | drift (points) | p50 ms* | budget |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for f in model["files"]:
        inp = f["input"] or {}
        dtype = inp.get("dtype", "?")
        if "quantization" in inp:
            q = inp["quantization"]
            dtype += f" (scale {q['scale']:.6g}, zero point {q['zero_point']})"
        acc = "–" if f.get("accuracy") is None else f"{f['accuracy'] * 100:.2f}%"
        drift = "–" if f.get("accuracy_drift_points") is None else f"{f['accuracy_drift_points']:+.2f}"
        p50 = "–" if f.get("latency_ms_p50") is None else f"{f['latency_ms_p50']:.2f}"
        ok = {True: "pass", False: "FAIL", None: "–"}[f.get("passed_budget")]
        precision = f["precision"]
        compute = f.get("compute") or {}
        if compute.get("integer_only"):
            precision += f" (integer-only, {compute['activations']} activations"
            if compute.get("int16_op_kinds"):
                precision += "; int16: " + ", ".join(k["kind"] for k in compute["int16_op_kinds"])
            precision += ")"
        elif compute:
            precision += " (int8 weights, float activations)"
        lines.append(f"| `{f['file']}` | {precision} | {dtype} {inp.get('shape')} | "
                     f"{f['size_bytes'] / 2**20:.2f} | {acc} | {drift} | {p50} | {ok} |")
    ev = model["evaluation"]
    lines += [
        "",
        f"*Accuracy on {ev.get('images')} evaluation images (reference "
        f"{'–' if ev.get('reference_accuracy') is None else format(ev['reference_accuracy'] * 100, '.2f') + '%'}); "
        "latency measured on the export machine's CPU at batch 1, not on a phone.",
        *_subgroup_card(model),
        "",
        "## Which file",
        "",
        "| hardware | file | why |",
        "|---|---|---|",
    ]
    for row in model["which_file"]:
        names = " or ".join(f"`{n}`" for n in row["files"]) or "none"
        lines.append(f"| {row['hardware']} | {names} | {row['why']} |")
    lines += [
        "",
        "CPU latencies were measured on the export machine"
        + (f" ({ev['latency_measured_on']})" if ev.get("latency_measured_on") else "")
        + ", not on a phone: the CPU choice can differ on your device, so time the candidates there.",
        "",
    ]
    if any((f.get("compute") or {}).get("activations") == "int16" for f in model["files"]):
        lines += [
            "Files with int16 activations use TFLite's 16x8 quantization (int8 weights, int16 activations): "
            "LiteRT's CPU kernels run them, but an int8-only accelerator (NPU, DSP) cannot. The export config "
            "chose them for this model because its int8 activations disagreed with the float model too often.",
            "",
        ]
    lines += [
        "## Input",
        "",
        _input_steps(pre) + " ",
        *([f"This model's own image processor does not fix an input size (its output follows the image's "
           f"shape); the export fixed it at {pre['input_size_fixed_at_export'][1]}x"
           f"{pre['input_size_fixed_at_export'][0]} (width x height, `input_size` in the config), so the app "
           "must resize every image to exactly that, as above. ", ""] if pre.get("input_size_fixed_at_export") else []),
        "The int8-io file takes int8 instead: quantize x with the input scale and zero point in `model.json` "
        "(`q = round(x / scale) + zero_point`, clamped to -128..127).",
        "",
        "## Output",
        "",
        f"`[1, {len(model['labels'])}]` logits (int8 for the int8-io file: `logit = (q - zero_point) * scale`). "
        + ("A multi-label model: the sigmoid of each logit is that label's probability, and every label above "
           "0.5 applies (the threshold it was validated at)." if model["output"].get("multi_label") else
           "Softmax gives probabilities; the argmax is the index into `labels.txt`."),
        "",
        "Labels and normalization are **not embedded as TFLite metadata**. tflite-support has no release "
        "for this toolchain, and MediaPipe's metadata writer does not import from its wheel. Read them from "
        "`labels.txt` and `model.json`.",
        "",
        "## Kotlin (Android, LiteRT / TensorFlow Lite Interpreter)",
        "",
        "```kotlin",
        f"val model = FileUtil.loadMappedFile(context, \"{snippet_file}\")  // the CPU choice above",
        "val interpreter = Interpreter(model)",
        "val labels = context.assets.open(\"labels.txt\").bufferedReader().readLines()",
        *_kotlin_preprocess(pre),
        f"val logits = Array(1) {{ FloatArray({len(model['labels'])}) }}",
        "interpreter.run(input.rewind(), logits)",
        "val top = labels[logits[0].indices.maxBy { logits[0][it] }]",
        "```",
        "",
        "## Swift (iOS, TensorFlowLiteSwift)",
        "",
        "```swift",
        f"let interpreter = try Interpreter(modelPath: Bundle.main.path(forResource: \"{snippet_stem}\", ofType: \"tflite\")!)",
        "try interpreter.allocateTensors()",
        "let labels = try String(contentsOfFile: Bundle.main.path(forResource: \"labels\", ofType: \"txt\")!)",
        "    .split(separator: \"\\n\").map(String.init)",
        f"let mean: [Float] = {mean}, std: [Float] = {std}",
        f"// rgb: [UInt8], row-major RGB, of the image resized and cropped to {w}x{h} as described under Input",
        "var input = [Float](); input.reserveCapacity(rgb.count)",
        *_swift_normalize(pre),
        "try interpreter.copy(Data(bytes: input, count: input.count * 4), toInputAt: 0)",
        "try interpreter.invoke()",
        "let out = try interpreter.output(at: 0).data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }",
        "let top = labels[out.indices.max(by: { out[$0] < out[$1] })!]",
        "```",
        "",
        *_executorch_card(model),
        *_coreml_card(model),
        "## Checksums",
        "",
        "`sha256sum -c SHA256SUMS` (or `shasum -a 256 -c SHA256SUMS` on macOS) verifies every file"
        " (the files inside an `.mlpackage` folder by their path).",
    ]
    return "\n".join(lines) + "\n"


def _executorch_card(model: dict[str, Any]) -> list[str]:
    """The card's section for the .pte files: NCHW input, and Kotlin/Swift with ExecuTorch's own API."""
    pte = [f for f in model["files"] if f["variant"] in EXECUTORCH_VARIANTS]
    if not pte:
        return []
    pre = model["preprocessing"]
    h, w = pre["input"]["height"], pre["input"]["width"]
    row = next((r for r in model["which_file"] if r["hardware"].startswith("ExecuTorch")), None)
    name = (row["files"] or [pte[0]["file"]])[0] if row else pte[0]["file"]
    n = len(model["labels"])
    files = ", ".join(f"`{f['file']}`" for f in pte)
    return [
        "## ExecuTorch (.pte)",
        "",
        f"{files}: ExecuTorch programs with "
        "the XNNPACK delegate, for apps that link the ExecuTorch runtime (with its XNNPACK backend) instead of "
        f"LiteRT. Input: float32 **NCHW** `[1, 3, {h}, {w}]` (channels first, unlike the TFLite files), "
        f"normalized as under Input; output: `[1, {n}]` float32 logits. Batch 1.",
        "",
        "```kotlin",
        "// Android: org.pytorch.executorch (the executorch-android AAR)",
        f"val module = Module.load(File(context.filesDir, \"{name}\").path)",
        f"val chw = FloatArray(3 * {h} * {w})  // chw[c * {h * w} + y * {w} + x] = normalized value",
        f"val input = Tensor.fromBlob(chw, longArrayOf(1, 3, {h}, {w}))",
        "val logits = module.forward(EValue.from(input))[0].toTensor().dataAsFloatArray",
        "val top = labels[logits.indices.maxBy { logits[it] }]",
        "```",
        "",
        "```swift",
        "// iOS: the ExecuTorch Swift package (products executorch and backend_xnnpack)",
        "import ExecuTorch",
        f"let module = Module(filePath: Bundle.main.path(forResource: \"{name.rsplit('.', 1)[0]}\", ofType: \"pte\")!)",
        f"// chw: [Float], 3 * {h} * {w} normalized values, channels first",
        f"let input = Tensor<Float>(chw, shape: [1, 3, {h}, {w}])",
        "let output: Tensor<Float> = try module.forward(input)[0].tensor()!",
        "let logits = output.scalars()",
        "let top = labels[logits.indices.max(by: { logits[$0] < logits[$1] })!]",
        "```",
        "",
    ]


def _coreml_card(model: dict[str, Any]) -> list[str]:
    """The card's section for the .mlpackage files: an image in (normalized inside), Swift with Vision."""
    packages = [f for f in model["files"] if f["variant"] in COREML_VARIANTS]
    if not packages:
        return []
    pre = model["preprocessing"]
    h, w = pre["input"]["height"], pre["input"]["width"]
    row = next((r for r in model["which_file"] if "Core ML" in r["hardware"]), None)
    name = (row["files"] if row else [packages[0]["file"]])[0].rsplit(".", 1)[0]
    r, crop = pre["resize"], pre["center_crop"]
    # Vision's own resize: .scaleFill for an exact resize, .centerCrop where the processor scales the
    # shorter side to the crop size and crops the centre; any other recipe (ConvNeXt's crop_pct resize
    # to 256 then crop 224) is not one of Vision's, so the app resizes and crops as under Input itself.
    if r["mode"] == "exact" and not crop:
        option, note = ".scaleFill", "the processor resizes to the input size without keeping the aspect ratio"
    elif r["mode"] == "shortest_edge" and crop and r["shortest_edge"] == min(h, w):
        option, note = ".centerCrop", "the processor scales the shorter side to the input size and crops the centre"
    else:
        option, note = ".scaleFill", (f"resize and crop the image to {w}x{h} yourself as under Input first: "
                                      "Vision has no option for this processor's recipe")
    files = ", ".join(f"`{f['file']}`" for f in packages)
    return [
        "## Core ML (.mlpackage, iOS 16 / macOS 13 and later)",
        "",
        f"{files}: Core ML ML programs with an **image input** (`image`, {w}x{h}, "
        f"{'BGR' if pre['channel_order'] == 'BGR' else 'RGB'}, 0-255): the rescale and normalization under Input "
        "are inside the model, so the app does not normalize. Outputs: `classLabel` (the top label) and "
        "`classLabel_probs` (label -> softmax probability); the labels are embedded. "
        "**Not validated on the export machine** (Core ML runs only on Apple's OSes): the accuracy columns "
        "above are empty for them; check one on a Mac (`coremltools` `MLModel.predict`) before shipping. "
        "Add the `.mlpackage` to the Xcode project: Xcode compiles it to `.mlmodelc` and generates a class.",
        "",
        "```swift",
        "import CoreML",
        "import Vision",
        "let config = MLModelConfiguration()",
        "config.computeUnits = .all  // Neural Engine, GPU or CPU, as Core ML decides",
        f"let url = Bundle.main.url(forResource: \"{name}\", withExtension: \"mlmodelc\")!",
        "let model = try VNCoreMLModel(for: MLModel(contentsOf: url, configuration: config))",
        "let request = VNCoreMLRequest(model: model) { request, _ in",
        "    guard let top = (request.results as? [VNClassificationObservation])?.first else { return }",
        "    print(top.identifier, top.confidence)  // label and softmax probability",
        "}",
        f"request.imageCropAndScaleOption = {option}  // {note}",
        "try VNImageRequestHandler(cgImage: image, orientation: .up).perform([request])",
        "```",
        "",
    ]
