"""Screenshot a report.html with a headless Chromium, for the documentation.

    python -m edgeport.report_screenshot [--skip-missing] REPORT PNG [--window-size W,H]

`make docs` uses it for docs/images/report.png. `find_chromium` and `CHROMIUM_FLAGS` are also what
the HTML report test (tests/test_report_html.py) drives the browser with.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WINDOW_SIZE = (1200, 1200)  # gender-vit: the summary table and the three plots at 1:1, cut before the subgroups
MAX_PNG_BYTES = 400_000  # larger screenshots are reduced to a 256-colour palette


def find_chromium() -> str | None:
    """The browser to run: $EDGEPORT_CHROMIUM if set, else the first Chromium/Chrome on PATH, else None."""
    named = os.environ.get("EDGEPORT_CHROMIUM")
    if named:
        return named
    return next((exe for exe in map(shutil.which, CHROMIUM_NAMES) if exe), None)


def screenshot(report: Path, png: Path, chromium: str, window_size: tuple[int, int] = WINDOW_SIZE,
               timeout_s: float = 120) -> int:
    """Render REPORT at window_size into PNG (palette-reduced when over MAX_PNG_BYTES); return its size in bytes."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeport-shot-") as tmp:
        raw = Path(tmp) / "page.png"
        run = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}",
                              "--hide-scrollbars", "--force-device-scale-factor=1", f"--screenshot={raw}",
                              f"--window-size={window_size[0]},{window_size[1]}", report.resolve().as_uri()],
                             capture_output=True, text=True, timeout=timeout_s)
        if run.returncode != 0 or not raw.exists():
            raise RuntimeError(f"{chromium} exited {run.returncode}: {run.stderr[-2000:]}")
        data = raw.read_bytes()
    if len(data) > MAX_PNG_BYTES:
        from PIL import Image

        out = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").quantize(256).save(out, "PNG", optimize=True)
        data = out.getvalue()
    png.write_bytes(data)
    return len(data)


def _size(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.split(","))
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeport.report_screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, metavar="REPORT", help="a report.html")
    parser.add_argument("png", type=Path, metavar="PNG", help="the image to write")
    parser.add_argument("--window-size", type=_size, default=WINDOW_SIZE, metavar="W,H",
                        help="browser window in pixels (default %s,%s)" % WINDOW_SIZE)
    parser.add_argument("--skip-missing", action="store_true",
                        help="without REPORT or a browser, say so and exit 0 instead of 2")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    missing = (f"{args.report} does not exist (make export-all writes it)" if not args.report.is_file() else
               "no Chromium/Chrome on PATH (apt-get install chromium, or set EDGEPORT_CHROMIUM)" if chromium is None
               else None)
    if missing:
        print(f"report_screenshot: {'skipped' if args.skip_missing else 'error'}: {args.png} not written: {missing}",
              file=sys.stderr)
        return 0 if args.skip_missing else 2
    size = screenshot(args.report, args.png, chromium, args.window_size)
    print(f"wrote {args.png} ({size // 1000} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
