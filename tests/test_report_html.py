"""report.html renders in a real headless browser (Debian's chromium) and shows the table and plots."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from edgeport.report_screenshot import CHROMIUM_FLAGS, find_chromium


def _chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("EDGEPORT_SKIP_BROWSER") == "1":
            pytest.skip("EDGEPORT_SKIP_BROWSER=1")
        pytest.fail("the HTML report test needs a headless browser: `apt-get install chromium` "
                    "(.ci/run installs it), or set EDGEPORT_CHROMIUM=/path/to/chrome")
    return exe


def test_html_report_renders_in_headless_chromium(validated_tiny, tmp_path):
    page = validated_tiny / "report.html"
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert "<script" not in text  # self-contained and static
    exe = _chromium()
    common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    report = json.loads((validated_tiny / "report.json").read_text())
    rows = re.findall(r"<tr class=\"(pass|fail)\">", html)
    assert len(rows) == len(report["variants"])  # the browser parsed one table row per variant
    for v in report["variants"]:
        assert f"<td>{v['name']}</td>" in html
    assert html.count('class="point"') == sum(1 for v in report["variants"] if v["latency_ms"])
    for fig in ("latency-vs-drift", "size", "per-class-drift"):
        assert f'id="{fig}"' in html
    shot = tmp_path / "page.png"
    run = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 20_000  # a drawn page, not a blank one
