"""sha256 of a file, read in blocks (ViT-B/16 artifacts are hundreds of MB).

Here, at the bottom of the import graph, so converters and edgeport share one copy.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def artifact_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted): a
    SavedModel, an OpenVINO IR or an .mlpackage is a folder."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()
