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
