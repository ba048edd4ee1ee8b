#!/usr/bin/env bash
# Create the project's virtual environment (.venv) from requirements.lock if it is
# missing or out of date. Called by every Makefile target; safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
STAMP="$VENV/.edgeport-lock.sha256"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found. edgeport needs Python 3.11 (set PYTHON=/path/to/python3.11)." >&2
    exit 1
fi

echo "==> creating $VENV from requirements.lock (first run takes a minute or two)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# A machine image of this project keeps a CPU build of torch in /opt/wheels; use it when present.
# Elsewhere (CI runners, laptops) torch==2.13.0+cpu comes from the PyTorch CPU wheel index.
find_links=(--extra-index-url https://download.pytorch.org/whl/cpu)
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
# The lock is installed by uv when it can be had (pinned here like pip): it installs the 4.3 GB
# set in about 26 s where pip takes 102 s on 2 cores (docs/decisions/bootstrap-uv.md); pip is
# the fallback. --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (this machine
# image, many CI images) nothing would ever be cached, and every process started by the pipeline
# and the tests would compile torch and TensorFlow again. --no-deps: the lock is complete. onnx2tf goes in by pip: it declares Python >= 3.12
# (see the comment in requirements.lock), and uv has no --ignore-requires-python.
if [ "${EDGEPORT_NO_UV:-}" != 1 ] \
   && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv==0.13.9 >/dev/null 2>&1; then
    uv_links=("${find_links[@]}")
    [ -d /opt/wheels ] || uv_links+=(--index-strategy unsafe-best-match)  # pins decide, not index order
    grep -v '^onnx2tf==' requirements.lock > "$VENV/.lock-without-onnx2tf.txt"
    "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$VENV/bin/python" --no-deps "${uv_links[@]}" \
        -r "$VENV/.lock-without-onnx2tf.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python \
        "$(grep '^onnx2tf==' requirements.lock)"
else
    # --ignore-requires-python: see the comment in requirements.lock.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-deps --ignore-requires-python "${find_links[@]}" -r requirements.lock
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
# The project's own modules, compiled once for the same reason as --compile-bytecode above: an
# editable install leaves them as sources, and with PYTHONDONTWRITEBYTECODE set every one of the
# dozens of processes export-all and the tests start compiled them again (0.24 s each for the CLI,
# pipeline, stage, worker and server modules, docs/benchmarks.md 2026-12-06). A module edited later
# is compiled from its source as usual: Python checks each cached file against its source.
"$VENV/bin/python" -m compileall -q -j 0 converters runtimes validation serving distillation edgeport >/dev/null
echo "$want" > "$STAMP"
echo "==> $VENV ready"
