"""Keep converter libraries' chatter out of edgeport's logs while a conversion runs."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Raise the named loggers ("" is the root) to ERROR, ignore warnings and swallow stdout.

    The tracers and quantizers warn per node or print progress; what matters of it goes into
    the manifest. Levels are restored afterwards.
    """
    targets = [logging.getLogger(name or None) for name in loggers]
    levels = [t.level for t in targets]
    for t in targets:
        t.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for t, level in zip(targets, levels):
            t.setLevel(level)
