"""report.html: one self-contained page (no scripts, no network) with the table and three plots
(and, when the evaluation set has subgroups, a subgroup x variant heat map of the drift; for a
student made by `edgeport distill`, a teacher-vs-student table after the variant table).

Plots: latency against accuracy drift for every variant, per-class accuracy drift, and
size per variant. They are drawn as inline SVG by this module rather than with a plotting
library: the page must open offline, in a CI artifact viewer or a mail attachment, and
three simple charts do not justify a plotting dependency (and its fonts and backends) in
the lock.
"""
from __future__ import annotations

import html
import math
from typing import Any

from edgeport.validation.decode_check import decode_markdown
from edgeport.validation.report_subgroups import subgroup_heatmap_html
from edgeport.validation.status import status_of, status_rank

PASS, FAIL = "#2e7d32", "#c62828"
HTML_CLASS = {"passed": "pass", "failed": "fail", "not validated": "unchecked"}
HTML_CELL = {"passed": "pass", "failed": "FAIL", "not validated": "not validated"}
PALETTE = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4e342e", "#283593",
           "#f9a825", "#37474f", "#00695c"]


def render_html(report: dict[str, Any]) -> str:
    """The whole page for one model's report."""
    e = html.escape
    status = "PASSED" if report["passed"] else "FAILED"
    ev = report["eval_set"]
    src = report["source"]
    ref = report["reference"]
    variants = sorted(report["variants"], key=status_rank)  # failures first
    rows = []
    for v in variants:
        lat = v.get("latency_ms") or {}
        reasons = "; ".join(f["message"] for f in v.get("failures", [])) or v.get("not_validated") or ""
        verdict = status_of(v)
        rows.append(
            f"<tr class='{HTML_CLASS[verdict]}'><td>{HTML_CELL[verdict]}</td>"
            f"<td>{e(v['name'])}</td><td>{e(v['runtime'])}</td><td>{_pct(v.get('accuracy'))}</td>"
            f"<td>{_pts(v.get('accuracy_drift_points'))}</td><td>{_pct(v.get('agreement'))}</td>"
            f"<td>{_sci(v.get('max_abs_diff'))}</td><td>{_ms(lat.get('p50'))}</td>"
            f"<td>{_mb(v.get('size_bytes'))}</td><td>{e(reasons)}</td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>edgeport report: {e(report['model'])} ({status})</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
h1 .status {{ color: {PASS if report['passed'] else FAIL}; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:nth-child(2), td:nth-child(3), td:last-child, th {{ text-align: left; }}
tr.fail td {{ background: #fdecea; }}
tr.unchecked td {{ background: #f5f5f5; color: #555; }}
figure {{ display: inline-block; margin: 1em 2em 1em 0; vertical-align: top; }}
figcaption {{ font-weight: 600; margin-bottom: .5em; }}
svg text {{ font-size: 11px; font-family: system-ui, sans-serif; }}
</style></head><body>
<h1>{e(report['model'])}: <span class="status">{status}</span></h1>
<p>Source <code>{e(str(src.get('path') or src.get('id')))}</code>{' @ <code>' + e(src['revision']) + '</code>' if src.get('revision') else ''}.
Evaluation set <code>{e(str(ev['path']))}</code>: {ev['images']} images, {ev['skipped']} skipped.
Reference (PyTorch) accuracy {_pct(ref.get('accuracy'))}, latency p50 {_ms((ref.get('latency_ms') or {}).get('p50'))} ms.
edgeport {e(str(report.get('edgeport_version', '')))}.</p>
<table id="variants"><thead><tr><th>status</th><th>variant</th><th>runtime</th><th>accuracy</th>
<th>drift (points)</th><th>agreement</th><th>max abs diff</th><th>p50 ms</th><th>MB</th><th>why it failed</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
{distillation_html(report)}
{''.join(f'<p id="decode">{e(line.replace("`", ""))}</p>' for line in decode_markdown(report) if line)}
<figure id="latency-vs-drift"><figcaption>Latency (batch 1, p50) against accuracy drift</figcaption>{scatter_latency_drift(report)}</figure>
<figure id="size"><figcaption>Size per variant</figcaption>{bars_size(report)}</figure>
<figure id="per-class-drift"><figcaption>Accuracy drift per class (points)</figcaption>{per_class_drift(report)}</figure>
{subgroup_heatmap_html(report)}
</body></html>
"""


def distillation_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The teacher-vs-student table of a distilled student, as plain text cells:
    (what, teacher, student, student / teacher). Shared by report.md and report.html."""
    d = report["distillation"]
    ev = d.get("evaluation")
    t_params, s_params = d.get("teacher_parameters"), d.get("student_parameters")
    rows = [("parameters", _count(t_params), _count(s_params),
             _ratio(s_params / t_params if t_params and s_params is not None else None))]
    if ev:
        drop = ev.get("accuracy_drop_points")
        rows.append((f"accuracy on {ev['images']} images", _pct(ev.get("teacher_accuracy")),
                     _pct(ev.get("student_accuracy")), "–" if drop is None else f"{-drop:+.2f} points"))
        rows.append(("agreement with the teacher (top-1)", "–", _pct(ev.get("agreement")), "–"))
    for lat in d.get("latency") or []:
        if lat.get("error"):
            rows.append((f"{lat['variant']} p50 ms", "–", "–", f"not measured: {lat['error']}"))
            continue
        where = ", ".join(x for x in (lat.get("runtime"), f"{lat['threads']} threads" if lat.get("threads") else None) if x)
        ratio = lat.get("ratio")
        if ratio is None and lat.get("teacher_ms") and lat.get("student_ms") is not None:
            ratio = lat["student_ms"] / lat["teacher_ms"]
        rows.append((f"{lat['variant']} p50 ms (batch 1{', ' + where if where else ''})",
                     _ms3(lat.get("teacher_ms")), _ms3(lat.get("student_ms")), _ratio(ratio)))
    return rows


def distillation_budget_text(report: dict[str, Any]) -> str:
    """The budget the student is judged with, as 'min_agreement 0.9, max_accuracy_drop 2, ...'."""
    budget = report["distillation"].get("budget") or {}
    return ", ".join(f"{k} {v:g}" for k, v in budget.items() if v is not None) or "none set"


def distillation_html(report: dict[str, Any]) -> str:
    """A distilled student's section: its teacher, the comparison table, the verdict, the worst
    subgroups and a link to distill.md (empty for a model that was not distilled)."""
    d = report.get("distillation")
    if not d:
        return ""
    e = html.escape
    preset = d.get("student_preset")
    body = "".join(f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td><td>{e(r)}</td></tr>"
                   for a, b, c, r in distillation_rows(report))
    failures = d.get("failures") or []
    if failures:
        verdict = (f"<p><strong style='color:{FAIL}'>Misses its distillation budget</strong> "
                   f"({e(distillation_budget_text(report))}):</p><ul class='distillation-failures'>"
                   + "".join(f"<li>{e(f['message'])}</li>" for f in failures) + "</ul>")
    elif not d.get("judged"):
        verdict = "<p>Not judged: no evaluation set at distill time.</p>"
    else:
        verdict = (f"<p><strong style='color:{PASS}'>Within its distillation budget</strong> "
                   f"({e(distillation_budget_text(report))}).</p>")
    worst_rows = d.get("worst_subgroups") or []
    worst = ""
    if worst_rows:
        cells = []
        for r in worst_rows:
            ci = r.get("drift_ci")
            cells.append(
                f"<tr><td>{e(str(r['attribute']))}={e(str(r['value']))}{'' if r.get('judged', True) else ' *'}</td>"
                f"<td>{r['images']}</td><td>{_pct(r.get('accuracy'))}</td><td>{_pct(r.get('reference_accuracy'))}</td>"
                f"<td>{_pts(r.get('drift_points'))}{f' ({ci[0]:+.1f} to {ci[1]:+.1f})' if ci else ''}</td>"
                f"<td>{_pct(r.get('agreement'))}</td></tr>")
        worst = ("<p>Worst subgroups (the student's largest accuracy loss against the teacher; * too small to "
                 "judge):</p><table id='distillation-subgroups'><thead><tr><th>subgroup</th><th>images</th>"
                 "<th>student</th><th>teacher</th><th>drift (points, 95% CI)</th><th>agreement</th></tr></thead>"
                 f"<tbody>{''.join(cells)}</tbody></table>")
    full = str(d.get("report") or "distill.md")
    return (f"<h2 id='distillation'>Distilled from {e(str(d['teacher']))}</h2>"
            f"<p>This model is a student of <code>{e(str(d['teacher']))}</code>, "
            + (f"preset <code>{e(str(preset))}</code>" if preset else "from a user config")
            + "." + (" Latency: batch-1 p50 of both, measured in turns in one run." if d.get("latency") else "")
            + "</p>"
            f"<table id='distillation-table'><thead><tr><th></th><th>teacher</th><th>student</th>"
            f"<th>student / teacher</th></tr></thead><tbody>{body}</tbody></table>"
            + verdict + worst
            + f"<p>Full distillation report: <a href='{e(full)}'><code>{e(full)}</code></a> (beside the artifacts).</p>")


def scatter_latency_drift(report: dict[str, Any], w: int = 520, h: int = 340) -> str:
    points = [(v["name"], (v.get("latency_ms") or {}).get("p50"), v.get("accuracy_drift_points"), v["passed"])
              for v in report["variants"]]
    points = [p for p in points if p[1] is not None and p[2] is not None]
    if not points:
        return "<p>no variant ran</p>"
    left, right, top, bottom = 50, 150, 15, 40
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    x0, x1 = 0.0, max(xs) * 1.1 or 1.0
    span = max(1.0, max(abs(y) for y in ys) * 1.2)
    y0, y1 = -span, span

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (h - top - bottom)

    parts = [_axes(w, h, left, right, top, bottom),
             f"<line x1='{left}' x2='{w - right}' y1='{py(0):.1f}' y2='{py(0):.1f}' stroke='#999' stroke-dasharray='4'/>"]
    for tick in _ticks(x0, x1):
        parts.append(f"<text x='{px(tick):.1f}' y='{h - bottom + 14}' text-anchor='middle'>{tick:g}</text>")
    for tick in _ticks(y0, y1):
        parts.append(f"<text x='{left - 5}' y='{py(tick) + 4:.1f}' text-anchor='end'>{tick:+g}</text>")
    parts.append(f"<text x='{(left + w - right) / 2}' y='{h - 5}' text-anchor='middle'>p50 latency (ms)</text>")
    parts.append(f"<text x='12' y='{(top + h - bottom) / 2}' transform='rotate(-90 12 {(top + h - bottom) / 2})' "
                 "text-anchor='middle'>accuracy drift (points)</text>")
    for i, (name, x, y, ok) in enumerate(points):
        color = PASS if ok else FAIL
        parts.append(f"<circle class='point' cx='{px(x):.1f}' cy='{py(y):.1f}' r='5' fill='{color}'>"
                     f"<title>{html.escape(name)}: {x:.2f} ms, {y:+.2f} points</title></circle>")
        parts.append(f"<text x='{w - right + 8}' y='{top + 12 + i * 14}' fill='{color}'>{html.escape(name)}</text>")
        parts.append(f"<line x1='{px(x):.1f}' y1='{py(y):.1f}' x2='{w - right + 5}' y2='{top + 8 + i * 14}' "
                     f"stroke='{color}' stroke-opacity='.25'/>")
    return _svg(w, h, parts)


def bars_size(report: dict[str, Any], w: int = 420) -> str:
    rows = [(v["name"], v.get("size_bytes")) for v in report["variants"] if v.get("size_bytes")]
    if not rows:
        return "<p>no sizes</p>"
    bar, gap, left = 16, 6, 140
    h = len(rows) * (bar + gap) + 10
    biggest = max(s for _, s in rows)
    parts = []
    for i, (name, size) in enumerate(rows):
        y = 5 + i * (bar + gap)
        width = (w - left - 70) * size / biggest
        parts.append(f"<text x='{left - 6}' y='{y + 12}' text-anchor='end'>{html.escape(name)}</text>")
        parts.append(f"<rect class='bar' x='{left}' y='{y}' width='{width:.1f}' height='{bar}' fill='#1565c0'/>")
        parts.append(f"<text x='{left + width + 4:.1f}' y='{y + 12}'>{size / 2**20:.2f} MB</text>")
    return _svg(w, h, parts)


def per_class_drift(report: dict[str, Any], w: int = 640) -> str:
    labels = report["labels"]
    variants = [v for v in report["variants"] if v.get("per_class_drift_points")]
    if not variants:
        return "<p>no variant ran</p>"
    left, right, top, bottom = 50, 150, 15, 30
    h = 300
    values = [d for v in variants for d in v["per_class_drift_points"].values() if d is not None]
    span = max(1.0, max((abs(d) for d in values), default=1.0) * 1.1)
    group = (w - left - right) / len(labels)
    bw = max(1.0, group * 0.8 / len(variants))

    def py(y: float) -> float:
        return top + (span - y) / (2 * span) * (h - top - bottom)

    parts = [_axes(w, h, left, right, top, bottom),
             f"<line x1='{left}' x2='{w - right}' y1='{py(0):.1f}' y2='{py(0):.1f}' stroke='#999'/>"]
    for tick in _ticks(-span, span):
        parts.append(f"<text x='{left - 5}' y='{py(tick) + 4:.1f}' text-anchor='end'>{tick:+g}</text>")
    for li, label in enumerate(labels):
        gx = left + li * group
        parts.append(f"<text x='{gx + group / 2:.1f}' y='{h - bottom + 14}' text-anchor='middle'>{html.escape(label)}</text>")
        for vi, v in enumerate(variants):
            d = v["per_class_drift_points"].get(label)
            if d is None:
                continue
            x = gx + group * 0.1 + vi * bw
            y_top, y_bot = sorted((py(d), py(0)))
            parts.append(f"<rect class='bar' x='{x:.1f}' y='{y_top:.1f}' width='{bw:.1f}' height='{max(0.5, y_bot - y_top):.1f}' "
                         f"fill='{PALETTE[vi % len(PALETTE)]}'><title>{html.escape(v['name'])} / {html.escape(label)}: "
                         f"{d:+.2f} points</title></rect>")
    for vi, v in enumerate(variants):
        parts.append(f"<rect x='{w - right + 8}' y='{top + vi * 14}' width='10' height='10' fill='{PALETTE[vi % len(PALETTE)]}'/>"
                     f"<text x='{w - right + 22}' y='{top + 9 + vi * 14}'>{html.escape(v['name'])}</text>")
    return _svg(w, h, parts)


def _axes(w: int, h: int, left: int, right: int, top: int, bottom: int) -> str:
    return (f"<line x1='{left}' y1='{top}' x2='{left}' y2='{h - bottom}' stroke='#333'/>"
            f"<line x1='{left}' y1='{h - bottom}' x2='{w - right}' y2='{h - bottom}' stroke='#333'/>")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(step)) if step > 0 else 1
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step)
    start = math.ceil(lo / step) * step
    out = []
    x = start
    while x <= hi + 1e-9:
        out.append(round(x, 10))
        x += step
    return out


def _svg(w: int, h: int, parts: list[str]) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}'>"
            + "".join(parts) + "</svg>")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.2f}%"


def _pts(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def _sci(x: float | None) -> str:
    return "–" if x is None else f"{x:.2e}"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _ms3(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**20:.2f}"
