"""Many models, many machines: split the config's models over N CI runners, and find their reports again.

`edgeport export-all --shard K/N` exports the models of shard K; `edgeport gate FOLDER` reads every
report.json the runners uploaded (a folder of shard folders of model folders) and gives one verdict.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

REPORT_FILE = "report.json"


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``; K is 1-based, 1 <= K <= N. ValueError (exit 2 in the CLI) names the fix."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"--shard {text!r}: expected K/N, two whole numbers with 1 <= K <= N "
                         "(e.g. --shard 1/4 on the first of 4 runners)")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"--shard {text!r}: K must be between 1 and N (K counts from 1: "
                         f"--shard 1/{max(n, 1)} ... --shard {max(n, 1)}/{max(n, 1)})")
    return k, n


def shard_of(name: str, n: int) -> int:
    """The shard (1..n) that takes model ``name``: a function of the name and n only.

    Stable rather than balanced: rendezvous hashing (the shard whose hash of name and shard number
    is highest) keeps a model on its shard when others are added, removed or reordered, and moves
    only about 1/n of them when n changes; round-robin over the list would balance counts exactly
    but move models whenever the list changes, at the price here of uneven shards (with few models
    some runners may get none, which exits 0).
    """
    if n < 1:
        raise ValueError(f"shard count must be at least 1, got {n}")
    # sha256, not hash(): Python salts str hashes per process, and every runner must agree.
    scores = [int.from_bytes(hashlib.sha256(f"{name}\0{j}".encode()).digest()[:8], "big") for j in range(1, n + 1)]
    return 1 + max(range(n), key=lambda i: (scores[i], -i))  # equal scores: the lower shard, so no ties


def models_in_shard(names: Iterable[str], k: int, n: int) -> list[str]:
    """The names of ``names`` that shard ``k`` of ``n`` takes, in their given order."""
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: K must be between 1 and N")
    return [name for name in names if shard_of(name, n) == k]


def find_reports(folder: Path) -> list[Path]:
    """Every report.json in ``folder`` or below it, sorted; none below a folder that holds one.

    A model folder's own subfolders (mobile/, savedmodel/) belong to that report, so the search
    stops there; a downloaded artifact folder (shard-1/<model>/report.json) or a folder of
    those is searched to any depth.
    """
    if (folder / REPORT_FILE).is_file():
        return [folder / REPORT_FILE]
    found = []
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        if REPORT_FILE in files:
            found.append(Path(here) / REPORT_FILE)
            dirs.clear()
    return sorted(found)


def duplicate_models(reports: Iterable[tuple[str, Path]]) -> list[str]:
    """One line per model that more than one report file covers, naming the files."""
    where: dict[str, list[Path]] = {}
    for model, path in reports:
        where.setdefault(model, []).append(path)
    return [f"model {model!r} is in {len(paths)} reports: {', '.join(str(p) for p in paths)}"
            for model, paths in where.items() if len(paths) > 1]
