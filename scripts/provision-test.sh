#!/usr/bin/env bash
# What `make test` needs beyond .venv: a headless Chromium for the HTML report test
# (tests/test_report_html.py). Installs Debian's chromium when it is missing and this user
# may install packages (root with apt-get); otherwise stops with the one command to run.
# EDGEPORT_CHROMIUM=/path/to/chrome uses another browser; EDGEPORT_SKIP_BROWSER=1 skips that test.
set -euo pipefail

if [ -n "${EDGEPORT_CHROMIUM:-}" ]; then
    if [ -x "$EDGEPORT_CHROMIUM" ]; then exit 0; fi
    echo "error: EDGEPORT_CHROMIUM=$EDGEPORT_CHROMIUM is not an executable; point it at a Chromium/Chrome binary" >&2
    exit 1
fi
if [ "${EDGEPORT_SKIP_BROWSER:-}" = 1 ]; then
    echo "==> EDGEPORT_SKIP_BROWSER=1: the HTML report test will be skipped"
    exit 0
fi
for browser in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$browser" >/dev/null 2>&1; then exit 0; fi
done
as_root=()
if [ "${EUID:-$(id -u)}" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)  # passwordless sudo, as on CI runners
fi
if { [ "${EUID:-$(id -u)}" = 0 ] || [ ${#as_root[@]} -gt 0 ]; } && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian's chromium for the HTML report test (apt-get, about a minute)"
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    if command -v chromium >/dev/null 2>&1; then exit 0; fi
    echo "error: apt-get installed chromium, but no chromium is on the PATH" >&2
    exit 1
fi
echo "error: the HTML report test needs a headless Chromium: run 'sudo apt-get install -y chromium' (or set EDGEPORT_CHROMIUM=/path/to/chrome, or EDGEPORT_SKIP_BROWSER=1 to skip that test), then 'make test' again" >&2
exit 1
