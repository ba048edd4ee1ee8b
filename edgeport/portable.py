"""Paths in what leaves the build machine: relative, never the builder's absolute layout.

Manifests, reports, the mobile bundle and bench files are handed to other people (CI
uploads, app teams). An absolute path of the machine that built them means nothing there
and leaks its directory layout, so every path they record is relative: an artifact to its
model's artifacts folder, a source, evaluation set or image folder to the project folder
(the config file's folder, or the working folder for a model named on the command line),
or a hub id. Free text (error messages, logs quoted in a report) is scrubbed of those two
absolute prefixes as well.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def relative_path(path: str | Path, base: str | Path) -> str:
    """``path`` relative to ``base`` (with ``..`` where it lies outside), POSIX separators."""
    rel = os.path.relpath(Path(path).resolve(), Path(base).resolve())
    return Path(rel).as_posix()


def absolute_from(base: str | Path, path: str | Path) -> Path:
    """Resolve a recorded path against the folder it is relative to (an absolute one stays)."""
    return (Path(base) / path).resolve()


Prefixes = list[tuple["re.Pattern[str]", str]]


def scrub_prefixes(folders: Iterable[str | Path]) -> Prefixes:
    """What ``scrub`` replaces: each folder's absolute path, made relative to that folder.

    Longest first, so an artifacts folder inside the project folder is matched before it;
    ``/a/b/`` becomes nothing and a bare ``/a/b`` becomes ``.``, but ``/a/bc`` is left alone.
    """
    resolved = sorted({str(Path(f).resolve()) for f in folders}, key=len, reverse=True)
    pairs: Prefixes = []
    for folder in resolved:
        pairs.append((re.compile(re.escape(folder + os.sep)), ""))
        pairs.append((re.compile(re.escape(folder) + r"(?![\w.-])"), "."))
    return pairs


def scrub(value: Any, prefixes: Prefixes) -> Any:
    """A copy of JSON-like ``value`` with every absolute prefix in its strings made relative."""
    if isinstance(value, str):
        for pattern, replacement in prefixes:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return {k: scrub(v, prefixes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, prefixes) for v in value]
    return value
