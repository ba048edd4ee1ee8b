"""Subgroups of an evaluation set, and how each variant's accuracy moves on each of them.

A gender classifier that loses 0.3 points overall can lose 3 on one age band or skin tone;
the overall figures hide it. Subgroups come from either

- a **file-name pattern**: a regular expression with named groups, searched in each image's
  file name (UTKFace: ``^(?P<age>\\d+)_(?P<gender>\\d)_(?P<race>\\d)_``), or
- a **manifest**: a CSV (a header row; the file column is ``file``, ``path``, ``filename`` or
  ``image``, else the first) or JSON (``{"FILE": {"COLUMN": value}}`` or a list of objects with a
  ``file`` key), FILE being the image's path under the evaluation folder or its bare file name.

Raw values are then named (``values``: race 0 -> white) or binned (``bins``: age lower edges
0, 10, 20, 40, 60 -> 0-9, 10-19, 20-39, 40-59, 60+). An image the pattern does not match, the
manifest does not list, or whose value the map or the bins do not cover, is counted and listed
per attribute, never dropped silently.

Each (attribute, value) subgroup gets its size, the reference's and the variant's accuracy
with a Wilson 95% interval, the agreement with the reference, and the drift in points with a
95% interval of the paired difference (each image scores -1, 0 or +1: the variant wrong where
the reference was right, both alike, or the reverse), by Agresti and Min's adjustment (half an
image added to each cell of the paired 2x2 table, then the Wald interval): the plain Wald
interval collapses to [0, 0] when no image changes, which would claim certainty that 400
images cannot give. A subgroup smaller than ``min_size`` is
reported but not judged against ``max_subgroup_drop``: one image of a 30-image group is 3.3
points.

Why our own code: Fairlearn's ``MetricFrame`` computes metrics per group, but not the paired
drift of one model against another, and it brings pandas and scikit-learn into a lock that has
neither; the arithmetic is a few lines.
"""
from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MIN_SIZE = 100  # one image of a 100-image subgroup is 1 point: below it, reported, not judged
Z95 = 1.959964
_FILE_COLUMNS = ("file", "path", "filename", "image")
_LISTED = 50  # uncovered files listed per attribute in the report (all are counted)


class SubgroupError(ValueError):
    """A subgroup setting or manifest that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class SubgroupSpec:
    """Where an evaluation set's subgroups come from (see the module docstring)."""

    pattern: str | None = None
    manifest: Path | None = None
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # attribute -> raw value -> name
    bins: dict[str, list[float]] = field(default_factory=dict)  # attribute -> ascending lower edges
    attributes: list[str] | None = None  # reported ones; None: every named group and column
    min_size: int = DEFAULT_MIN_SIZE

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str, base_dir: Path) -> "SubgroupSpec":
        """A spec from a config table (``[models.subgroups]``); ``manifest`` is relative to ``base_dir``."""
        known = {"pattern", "manifest", "values", "bins", "attributes", "min_size"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SubgroupError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        try:
            spec = cls(
                pattern=data.get("pattern") or None,
                manifest=base_dir / data["manifest"] if data.get("manifest") else None,
                values={str(a): {str(k): str(v) for k, v in m.items()} for a, m in data.get("values", {}).items()},
                bins={str(a): [float(x) for x in edges] for a, edges in data.get("bins", {}).items()},
                attributes=[str(a) for a in data["attributes"]] if "attributes" in data else None,
                min_size=int(data.get("min_size", DEFAULT_MIN_SIZE)),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise SubgroupError(f"{where}: {exc}") from None
        spec.check(where)
        return spec

    def check(self, where: str) -> None:
        """Raise SubgroupError for a spec that cannot work, before any image is read."""
        if not self.pattern and not self.manifest:
            raise SubgroupError(f"{where}: subgroups need a 'pattern' (a regular expression with named groups, "
                                "searched in each file name) or a 'manifest' (CSV or JSON: file -> columns)")
        if self.pattern:
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise SubgroupError(f"{where}: pattern {self.pattern!r} is not a valid regular expression: {exc}") \
                    from None
            if not compiled.groupindex:
                raise SubgroupError(f"{where}: pattern {self.pattern!r} has no named group; name each attribute, "
                                    r"e.g. ^(?P<age>\d+)_")
        both = sorted(set(self.values) & set(self.bins))
        if both:
            raise SubgroupError(f"{where}: attribute(s) {both} have both a value map and bins; give one")
        for attribute, edges in self.bins.items():
            if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
                raise SubgroupError(f"{where}: bins for {attribute!r} must be ascending lower edges, e.g. "
                                    f"[0, 10, 20, 40, 60]; got {edges}")
        if self.min_size < 1:
            raise SubgroupError(f"{where}: min_size must be at least 1, not {self.min_size}")

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "manifest": str(self.manifest) if self.manifest else None,
                "values": self.values, "bins": self.bins, "attributes": self.attributes, "min_size": self.min_size}


@dataclass
class Assignment:
    """Each evaluation image's value of each attribute (None where not covered), in image order."""

    attributes: list[str]
    values: dict[str, list[str | None]]
    order: dict[str, list[str]]  # attribute -> its values in display order
    uncovered: dict[str, list[tuple[str, str]]]  # attribute -> (image, reason)
    min_size: int

    def summary(self, spec: SubgroupSpec) -> dict[str, Any]:
        """The report's ``subgroups`` section: what the groups came from, their sizes, what was not covered."""
        return {
            "spec": spec.to_dict(),
            "min_size": self.min_size,
            "attributes": {a: {v: sum(1 for x in self.values[a] if x == v) for v in self.order[a]}
                           for a in self.attributes},
            "uncovered": {a: {"images": len(self.uncovered[a]),
                              "files": [{"path": p, "reason": r} for p, r in self.uncovered[a][:_LISTED]]}
                          for a in self.attributes if self.uncovered[a]},
        }


def assign(spec: SubgroupSpec, paths: Sequence[Path], root: Path) -> Assignment:
    """Every attribute's value for each of ``paths`` (images under evaluation folder ``root``)."""
    rel = [p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name for p in paths]
    raw: dict[str, list[str | None]] = {}
    why: dict[str, list[str | None]] = {}
    if spec.pattern:
        compiled = re.compile(spec.pattern)
        for name in compiled.groupindex:
            raw[name], why[name] = [], []
        for r in rel:
            m = compiled.search(Path(r).name)
            for name in compiled.groupindex:
                value = m.group(name) if m else None
                raw[name].append(value)
                why[name].append(None if value is not None else
                                 ("file name does not match the pattern" if m is None else f"no {name} in the file name"))
    if spec.manifest:
        table = read_manifest(spec.manifest)
        columns = sorted({c for row in table.values() for c in row})
        by_name: dict[str, list[str]] = {}
        for key in table:
            by_name.setdefault(Path(key).name, []).append(key)
        for column in columns:
            raw[column], why[column] = [], []
        for r in rel:
            key = r if r in table else (by_name.get(Path(r).name, [None])[0]
                                        if len(by_name.get(Path(r).name, [])) == 1 else None)
            row = table.get(key) if key else None
            for column in columns:
                value = (row or {}).get(column)
                value = None if value is None or str(value).strip() == "" else str(value).strip()
                raw[column].append(value)
                why[column].append(None if value is not None else
                                   (f"not in {spec.manifest.name}" if row is None else f"no {column} in {spec.manifest.name}"))
    attributes = spec.attributes if spec.attributes is not None else list(raw)
    missing = [a for a in attributes if a not in raw]
    if missing:
        raise SubgroupError(f"subgroup attribute(s) {missing} are not named by the pattern or the manifest "
                            f"(they give: {', '.join(raw) or 'nothing'})")
    for a in list(spec.values) + list(spec.bins):
        if a not in raw:
            raise SubgroupError(f"subgroups: a value map or bins is set for {a!r}, which the pattern or the "
                                f"manifest does not give (they give: {', '.join(raw)})")
    values: dict[str, list[str | None]] = {}
    order: dict[str, list[str]] = {}
    uncovered: dict[str, list[tuple[str, str]]] = {}
    for a in attributes:
        named, reasons = [], []
        for value, reason in zip(raw[a], why[a]):
            if value is None:
                named.append(None), reasons.append(reason)
            elif a in spec.values:
                name = spec.values[a].get(value)
                named.append(name)
                reasons.append(None if name is not None else
                               f"{a} value {value!r} is not in the value map ({', '.join(spec.values[a])})")
            elif a in spec.bins:
                label, reason = _bin(value, spec.bins[a], a)
                named.append(label), reasons.append(reason)
            else:
                named.append(value), reasons.append(None)
        values[a] = named
        uncovered[a] = [(r, reason) for r, v, reason in zip(rel, named, reasons) if v is None]
        present = {v for v in named if v is not None}
        if a in spec.values:
            order[a] = [v for v in dict.fromkeys(spec.values[a].values()) if v in present]
        elif a in spec.bins:
            order[a] = [v for v in bin_labels(spec.bins[a]) if v in present]
        else:
            order[a] = sorted(present, key=_natural)
    return Assignment(list(attributes), values, order, uncovered, spec.min_size)


def read_manifest(path: Path) -> dict[str, dict[str, str]]:
    """file -> {column: value} from a CSV or JSON subgroup manifest."""
    if not path.exists():
        raise SubgroupError(f"subgroup manifest not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubgroupError(f"{path}: not valid JSON: {exc}") from None
        if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            return {str(k): {str(c): v for c, v in row.items()} for k, row in data.items()}
        if isinstance(data, list) and all(isinstance(r, dict) and "file" in r for r in data):
            return {str(r["file"]): {str(c): v for c, v in r.items() if c != "file"} for r in data}
        raise SubgroupError(f'{path}: expected {{"FILE": {{"COLUMN": value}}}} or [{{"file": FILE, "COLUMN": value}}]')
    rows = list(csv.reader(text.splitlines()))
    if len(rows) < 2:
        raise SubgroupError(f"{path}: a CSV manifest needs a header row (file, then one column per attribute) "
                            "and at least one row")
    header = [h.strip() for h in rows[0]]
    key = next((i for i, h in enumerate(header) if h.lower() in _FILE_COLUMNS), 0)
    table: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise SubgroupError(f"{path} line {number}: {len(row)} cells, the header has {len(header)}")
        table[row[key].strip()] = {h: cell for i, (h, cell) in enumerate(zip(header, row)) if i != key}
    return table


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the bins that start at ``edges``: 0-9, 10-19, ..., 60+ (integer edges), else [a, b)."""
    whole = all(float(e).is_integer() for e in edges)
    labels = []
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        if whole:
            labels.append(f"{int(low)}+" if high is None else f"{int(low)}-{int(high) - 1}")
        else:
            labels.append(f"{low:g}+" if high is None else f"[{low:g}, {high:g})")
    return labels


def _bin(value: str, edges: Sequence[float], attribute: str) -> tuple[str | None, str | None]:
    try:
        x = float(value)
    except ValueError:
        return None, f"{attribute} value {value!r} is not a number (bins need one)"
    if not math.isfinite(x) or x < edges[0]:
        return None, f"{attribute} value {value!r} is below the first bin ({edges[0]:g})"
    index = int(np.searchsorted(np.asarray(edges, dtype=float), x, side="right")) - 1
    return bin_labels(edges)[index], None


def _natural(value: str) -> tuple:
    return tuple((0, float(p), "") if p.replace(".", "", 1).isdigit() else (1, 0.0, p)
                 for p in re.split(r"(\d+(?:\.\d+)?)", value) if p)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion: honest at 0% and 100% and on small groups."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n)), min(1.0, (centre + spread) / (1 + z * z / n))


def paired_drift_interval(gains: int, losses: int, n: int, z: float = Z95) -> list[float]:
    """95% interval (points) of the accuracy difference of two classifiers on the same n images.

    ``gains``: images only the variant gets right; ``losses``: images only the reference gets
    right. Agresti and Min (2005): add 0.5 to each of the four cells of the paired table, then
    Wald; it keeps a width when gains = losses = 0 (about +-0.5 points at n = 400).
    """
    m = n + 2
    pg, pl = (gains + 0.5) / m, (losses + 0.5) / m
    centre = pg - pl
    spread = z * math.sqrt(max(pg + pl - centre * centre, 0.0) / m)
    return [max(-1.0, centre - spread) * 100.0, min(1.0, centre + spread) * 100.0]


def subgroup_rows(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray,
                  assignment: Assignment) -> list[dict[str, Any]]:
    """Per (attribute, value): images, accuracy with its interval, the reference's, agreement and drift.

    ``drift_points`` is the variant's accuracy minus the reference's on the same images (points);
    ``drift_ci`` its 95% interval from the paired per-image differences (``paired_drift_interval``); ``judged`` whether the
    subgroup has at least ``min_size`` images.
    """
    pred, ref = np.argmax(logits, axis=1), np.argmax(reference, axis=1)
    right, ref_right = pred == labels, ref == labels
    rows = []
    for a in assignment.attributes:
        column = np.asarray([v if v is not None else "" for v in assignment.values[a]], dtype=object)
        covered = np.asarray([v is not None for v in assignment.values[a]])
        for value in assignment.order[a]:
            mask = covered & (column == value)
            n = int(mask.sum())
            k, k_ref = int(right[mask].sum()), int(ref_right[mask].sum())
            gains = int((right[mask] & ~ref_right[mask]).sum())
            losses = int((~right[mask] & ref_right[mask]).sum())
            drift = (k - k_ref) / n * 100.0
            rows.append({
                "attribute": a, "value": value, "images": n,
                "accuracy": k / n, "accuracy_ci": list(wilson_interval(k, n)),
                "reference_accuracy": k_ref / n,
                "agreement": float(np.mean(pred[mask] == ref[mask])),
                "drift_points": drift,
                "drift_ci": paired_drift_interval(gains, losses, n),
                "judged": n >= assignment.min_size,
            })
    return rows


def reference_rows(reference: np.ndarray, labels: np.ndarray, assignment: Assignment) -> list[dict[str, Any]]:
    """The reference's own figures per subgroup (for the report's reference and the mobile card)."""
    return [{k: r[k] for k in ("attribute", "value", "images", "accuracy", "accuracy_ci", "judged")}
            for r in subgroup_rows(reference, reference, labels, assignment)]


def worst(rows: list[dict[str, Any]] | None, count: int = 3) -> list[dict[str, Any]]:
    """The ``count`` subgroups with the largest accuracy loss, judged ones first."""
    return sorted(rows or [], key=lambda r: (not r["judged"], r["drift_points"]))[:count]
