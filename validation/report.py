"""The parity report: ``report.json`` for machines, ``report.md`` for a pull-request comment."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeport.converters.atomic import atomic_path
from edgeport.runtimes.machine import cpu_description
from edgeport.validation.decode_check import decode_markdown
from edgeport.validation.harness import VariantResult
from edgeport.validation.report_html import distillation_budget_text, distillation_rows, render_html
from edgeport.validation.status import status_of, status_rank
from edgeport.validation.report_subgroups import subgroup_markdown


def build_report(
    *,
    model: str,
    source: dict[str, Any],
    labels: list[str],
    eval_set: dict[str, Any],
    reference: VariantResult,
    variants: list[VariantResult],
    settings: dict[str, Any],
    edgeport_version: str,
) -> dict[str, Any]:
    """Assemble the report dictionary (the schema of report.json)."""
    return {
        "model": model,
        "source": source,
        "labels": labels,
        "eval_set": eval_set,
        "passed": all(v.status != "failed" for v in variants),  # not validated here (Core ML) fails nothing
        "reference": reference.to_dict(),
        "variants": [v.to_dict() for v in variants],
        "settings": settings,
        "machine": cpu_description(),
        "edgeport_version": edgeport_version,
    }


def write_reports(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write report.json, report.md and report.html into ``out_dir`` (each atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    _write(json_path, json.dumps(report, indent=2) + "\n")
    _write(md_path, render_markdown(report))
    _write(out_dir / "report.html", render_html(report))
    return json_path, md_path


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def precision_search_lines(report: dict[str, Any], shown: int = 8) -> list[str]:
    """Per searched variant: how many layers were raised, to what, the most sensitive ones, and on what judged."""
    lines = []
    for v in report["variants"]:
        search = v.get("precision_search")
        if not search:
            continue
        raised = search["raised"]
        head = (f"`{v['name']}`: {len(raised)} of {search['candidates']} "
                f"{'op kinds' if 'int16' in search['raised_to'] else 'layers'} raised to {search['raised_to']}, "
                f"judged on {search['holdout_images']} held-out calibration images "
                f"({'budget met' if search['passed_on_holdout'] else 'budget not met even so'})")
        if raised:
            named = ", ".join(f"`{r['name']}`" + (f" ({r['ops']} ops)" if r.get("ops") else "")
                              + (f" {r['sensitivity']:.3f}" if r.get("sensitivity") is not None else "")
                              + (f" (its group of {r['measured_with_group_of']})" if r.get("measured_with_group_of") else "")
                              for r in raised[:shown])
            more = f", and {len(raised) - shown} more (manifest.json)" if len(raised) > shown else ""
            head += (f"; in the order raised, with its measured sensitivity: {named}{more}"
                     if raised[0].get("sensitivity") is not None else f" (by {search['tool']}): {named}{more}")
        else:
            head += "; everything int8"
        lines.append(head)
    return lines


def failure_lines(report: dict[str, Any]) -> list[str]:
    """One line per missed budget or error: 'MODEL/VARIANT: metric value (budget ...)'."""
    lines = []
    for v in report["variants"]:
        for f in v["failures"]:
            lines.append(f"{report['model']}/{v['name']}: {f['message']}")
    for f in (report.get("distillation") or {}).get("failures") or []:  # a student that misses its teacher budget
        lines.append(f"{report['model']}/distillation: {f['message']}")
    return lines


def distillation_markdown(report: dict[str, Any]) -> list[str]:
    """report.md's section on a student made by `edgeport distill` (empty for any other model)."""
    d = report.get("distillation")
    if not d:
        return []
    preset = d.get("student_preset")
    lines = ["", f"## Distilled from {d['teacher']}", "",
             f"This model is a student of `{d['teacher']}`, "
             + (f"preset `{preset}`" if preset else "from a user config")
             + "." + (" Latency: batch-1 p50 of both, measured in turns in one run." if d.get("latency") else ""), "",
             "| | teacher | student | student / teacher |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(_cell(c) for c in row)} |" for row in distillation_rows(report)]
    failures = d.get("failures") or []
    if failures:
        lines += ["", f"**Misses its distillation budget** ({distillation_budget_text(report)}):", ""]
        lines += [f"- {f['message']}" for f in failures]
    elif not d.get("judged"):
        lines += ["", "Not judged: no evaluation set at distill time."]
    else:
        lines += ["", f"Within its distillation budget ({distillation_budget_text(report)})."]
    worst = d.get("worst_subgroups") or []
    if worst:
        lines += ["", "Worst subgroups (the student's largest accuracy loss against the teacher; * too small to judge):",
                  "", "| subgroup | images | student | teacher | drift (points, 95% CI) | agreement |",
                  "|---|---:|---|---|---|---|"]
        for r in worst:
            ci = r.get("drift_ci")
            drift = "–" if r.get("drift_points") is None else f"{r['drift_points']:+.2f}"
            group = f"{r['attribute']}={r['value']}{'' if r.get('judged', True) else ' *'}"
            lines.append(f"| {_cell(group)} | {r['images']} | {_pct(r.get('accuracy'))} | "
                         f"{_pct(r.get('reference_accuracy'))} | {drift}"
                         f"{f' ({ci[0]:+.1f} to {ci[1]:+.1f})' if ci else ''} | {_pct(r.get('agreement'))} |")
    lines += ["", f"Full distillation report: `{d.get('report') or 'distill.md'}` (beside the artifacts)."]
    return lines


def not_validated_lines(report: dict[str, Any]) -> list[str]:
    """One line per variant this machine could not run (neither passed nor failed)."""
    return [f"{report['model']}/{v['name']}: {v.get('not_validated')}; not counted as pass or fail"
            for v in report["variants"] if status_of(v) == "not validated"]


def localization_lines(report: dict[str, Any]) -> list[str]:
    """Where each failed ONNX variant first diverges from onnx-fp32, one line each."""
    lines = []
    for v in report["variants"]:
        loc = v.get("localization") or {}
        first = loc.get("first_divergent")
        if first:
            lines.append(f"{report['model']}/{v['name']}: first diverges at node `{first['node']}` "
                         f"({first['op_type']}, tensor `{first['tensor']}`): relative error "
                         f"{first['relative_error']:.3f} > {loc['tolerance']} on {loc['images']} images "
                         f"(all {loc['compared_tensors']} tensors in report.json)")
        elif loc.get("error"):
            lines.append(f"{report['model']}/{v['name']}: drift localization failed: {loc['error']}")
        elif loc:
            lines.append(f"{report['model']}/{v['name']}: no intermediate tensor exceeds relative error "
                         f"{loc['tolerance']}; the drift accumulates")
    return lines


STATUS_CELL = {"passed": "pass", "failed": "**FAIL**", "not validated": "not validated"}


def render_markdown(report: dict[str, Any]) -> str:
    """A compact summary: status line, one table (failures first), a distilled student's comparison
    with its teacher, then the failure list."""
    src = report["source"]
    ev = report["eval_set"]
    status = "PASSED" if report["passed"] else "FAILED"
    lines = [
        f"# edgeport parity report: {report['model']} — {status}",
        "",
        f"- source: `{src.get('path') or src.get('id')}`"
        + (f" @ `{src['revision']}`" if src.get("revision") else "")
        + (" — **random weights: latency and parity only, accuracy means nothing**" if src.get("random_weights") else "")
        + (" — **pickle weights loaded (--allow-pickle)**" if src.get("allow_pickle") else ""),
        f"- evaluation set: `{ev['path']}` — {ev['images']} images, {ev['skipped']} skipped",
        f"- labels: {', '.join(report['labels'])}",
        f"- reference (PyTorch) accuracy: {_pct(report['reference']['accuracy'])}, "
        f"latency p50 {_ms(report['reference']['latency_ms'])}",
        "",
        "| status | variant | runtime | accuracy | agreement | max abs diff | mean abs diff | cosine | p50 ms | p90 ms | size |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(report["variants"], key=status_rank)  # failures first, stable
    for v in ordered:
        lat = v["latency_ms"] or {}
        lines.append(
            f"| {STATUS_CELL[status_of(v)]} | {v['name']} | {v['runtime']} | {_pct(v['accuracy'])} | "
            f"{_pct(v['agreement'])} | {_num(v['max_abs_diff'])} | {_num(v['mean_abs_diff'])} | "
            f"{_num(v['cosine'], 6)} | {_num(lat.get('p50'), 3)} | {_num(lat.get('p90'), 3)} | {_size(v['size_bytes'])} |"
        )
    wide = [v["name"] for v in report["variants"] if v.get("activations") == "int16"]
    if wide:
        lines += ["", f"{', '.join(wide)}: int16 activations, int8 weights (TFLite 16x8, integer-only; "
                      "`full_integer_activations` in the config). int8-only accelerators cannot run them."]
    lines += distillation_markdown(report)
    lines += decode_markdown(report)
    unchecked = [v for v in report["variants"] if status_of(v) == "not validated"]
    if unchecked:
        lines += ["", "## Not validated on this machine", ""]
        lines += [f"- {v['name']}: {v.get('not_validated')}; neither passed nor failed, and the gate does not "
                  "count it. Its structure was checked when it was made (manifest.json settings.check)."
                  for v in unchecked]
    raised = precision_search_lines(report)
    if raised:
        lines += ["", "## Layers the precision search kept at higher precision", ""] + [f"- {line}" for line in raised]
    failures = failure_lines(report)
    if failures:
        lines += ["", "## Failures", ""] + [f"- {line}" for line in failures]
    lines += subgroup_markdown(report)
    located = localization_lines(report)
    if located:
        lines += ["", "## Where the failing ONNX variants diverge", ""] + [f"- {line}" for line in located]
    if ev.get("skipped_files"):
        lines += ["", f"## Skipped files ({ev['skipped']})", ""]
        lines += [f"- `{s['path']}`: {s['reason']}" for s in ev["skipped_files"][:50]]
        if ev["skipped"] > 50:
            lines.append(f"- … and {ev['skipped'] - 50} more (see report.json)")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text for one Markdown table cell (a '|' in it would start a new cell)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.2f}%"


def _num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "–"
    if digits > 2:
        return f"{x:.{digits}f}" if abs(x) >= 1e-3 else f"{x:.2e}"
    return f"{x:.2e}"


def _ms(lat: dict | None) -> str:
    return "–" if not lat else f"{lat['p50']:.3f} ms"


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
