"""The subgroup parts of report.md and report.html: worst subgroups per variant, and a heat map."""
from __future__ import annotations

import html
from typing import Any

from edgeport.validation.subgroups import worst


def _ci(interval: list[float] | None) -> str:
    return "–" if not interval else f"{interval[0] * 100:.1f}-{interval[1] * 100:.1f}%"


def _group(row: dict[str, Any]) -> str:
    return f"{row['attribute']}={row['value']}"


def subgroup_markdown(report: dict[str, Any], shown: int = 3) -> list[str]:
    """report.md's lines on subgroups (empty when the evaluation set has none)."""
    info = report.get("subgroups")
    if not info:
        return []
    lines = ["", "## Subgroups", "",
             f"Subgroups of {report['eval_set']['images']} evaluation images "
             f"({'pattern `' + info['spec']['pattern'] + '`' if info['spec'].get('pattern') else ''}"
             f"{' and ' if info['spec'].get('pattern') and info['spec'].get('manifest') else ''}"
             f"{'manifest `' + str(info['spec']['manifest']) + '`' if info['spec'].get('manifest') else ''}); "
             f"subgroups under {info['min_size']} images are reported, not judged (marked *). "
             "Intervals: Wilson 95% for accuracy, paired 95% for drift."]
    for attribute, block in info.get("uncovered", {}).items():
        listed = ", ".join(f"`{f['path']}` ({f['reason']})" for f in block["files"][:5])
        lines.append(f"- **{block['images']} image(s) have no {attribute}** and are in no {attribute} subgroup: "
                     f"{listed}{', ...' if block['images'] > 5 else ''} (all listed in report.json)")
    lines += ["", "| subgroup | images | reference accuracy (95% CI) |", "|---|---:|---|"]
    for r in report["reference"].get("subgroups") or []:
        lines.append(f"| {_group(r)}{'' if r['judged'] else ' *'} | {r['images']} | "
                     f"{r['accuracy'] * 100:.2f}% ({_ci(r['accuracy_ci'])}) |")
    lines += ["", f"Worst {shown} subgroups per variant (largest accuracy loss against the reference on the "
                  "same images, judged subgroups first; only subgroups that lose accuracy):", "",
              "| variant | subgroup | images | accuracy | reference | drift (points, 95% CI) | agreement | budget |",
              "|---|---|---:|---|---|---|---|---|"]
    for v in report["variants"]:
        budget = v.get("budget", {}).get("max_subgroup_drop")
        if v.get("subgroups") is None:
            continue
        losing = [r for r in worst(v["subgroups"], shown) if r["drift_points"] < 0]
        if not losing:
            lines.append(f"| {v['name']} | none below the reference | | | | | | "
                         f"{'–' if budget is None else f'>= -{budget:g}'} |")
        for r in losing:
            ci = r.get("drift_ci")
            over = budget is not None and r["judged"] and -r["drift_points"] > budget
            lines.append(
                f"| {v['name']} | {_group(r)}{'' if r['judged'] else ' *'} | {r['images']} | "
                f"{r['accuracy'] * 100:.2f}% | {r['reference_accuracy'] * 100:.2f}% | {r['drift_points']:+.2f}"
                f"{f' ({ci[0]:+.1f} to {ci[1]:+.1f})' if ci else ''} | {r['agreement'] * 100:.1f}% | "
                f"{'–' if budget is None else ('**over**: ' if over else '') + f'>= -{budget:g}'} |")
    return lines


def _cell_color(drift: float, budget: float | None) -> str:
    """Red for a loss (full red at the budget, or 5 points without one), green for a gain."""
    scale = budget or 5.0
    strength = min(1.0, abs(drift) / scale)
    if drift < 0:
        return f"rgba(198, 40, 40, {0.08 + 0.75 * strength:.2f})"
    if drift > 0:
        return f"rgba(46, 125, 50, {0.08 + 0.5 * strength:.2f})"
    return "#fff"


def subgroup_heatmap_html(report: dict[str, Any]) -> str:
    """report.html's heat map: subgroup x variant, drift in points (empty without subgroups)."""
    info = report.get("subgroups")
    if not info:
        return ""
    e = html.escape
    variants = [v for v in report["variants"] if v.get("subgroups")]
    cells = {(v["name"], r["attribute"], r["value"]): r for v in variants for r in v["subgroups"]}
    head = "".join(f"<th>{e(v['name'])}</th>" for v in variants)
    body = []
    for ref in report["reference"].get("subgroups") or []:
        row = [f"<td>{e(_group(ref))}{'' if ref['judged'] else ' *'}</td><td>{ref['images']}</td>"
               f"<td>{ref['accuracy'] * 100:.1f}%</td>"]
        for v in variants:
            r = cells.get((v["name"], ref["attribute"], ref["value"]))
            if r is None:
                row.append("<td>–</td>")
                continue
            budget = v.get("budget", {}).get("max_subgroup_drop")
            ci = r.get("drift_ci")
            tip = (f"{v['name']} on {_group(r)}: {r['accuracy'] * 100:.2f}% vs {r['reference_accuracy'] * 100:.2f}%, "
                   f"{r['images']} images" + (f", drift 95% CI {ci[0]:+.2f} to {ci[1]:+.2f}" if ci else "")
                   + ("" if r["judged"] else ", too small to judge"))
            style = f"background:{_cell_color(r['drift_points'], budget)}" + ("" if r["judged"] else ";font-style:italic")
            row.append(f"<td class='heat' style='{style}' title='{e(tip)}'>{r['drift_points']:+.1f}</td>")
        body.append("<tr>" + "".join(row) + "</tr>")
    uncovered = "".join(f"<li>{block['images']} image(s) without {e(a)}</li>"
                        for a, block in info.get("uncovered", {}).items())
    return (f"<h2 id='subgroups'>Accuracy drift per subgroup (points)</h2>"
            f"<p>Each cell: the variant's accuracy minus the reference's on the subgroup's images; red is a loss "
            f"(full red at the variant's <code>max_subgroup_drop</code>). Subgroups under {info['min_size']} images "
            f"(*, italic) are reported, not judged.</p>"
            + (f"<ul>{uncovered}</ul>" if uncovered else "")
            + f"<table id='subgroup-heatmap'><thead><tr><th>subgroup</th><th>images</th><th>reference</th>{head}"
              f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
