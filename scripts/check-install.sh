#!/usr/bin/env bash
# Build edgeport's wheel and install it, with pip's own resolver, into fresh Python 3.11 virtual
# environments, one per install a user would pick (`make check-install`; EXTRAS="core serve all").
# In each: `pip check`, `edgeport --help`, `edgeport backends`; in the core one also `edgeport
# export` + `validate` of the bundled gender-vit on the core (ONNX) variants, from a folder outside
# the repository. Prints wall time and site-packages size per install. Needs the package index
# (minutes, GBs for [all]); not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3.11}
EXTRAS=${EXTRAS:-core serve all}
WORK=$(mktemp -d -t edgeport-install-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export USE_TF=0 HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1

echo "==> building the wheel"
.venv/bin/python -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" . >/dev/null
rm -rf build ./*.egg-info
wheel=$(ls "$WORK"/dist/edgeport-*.whl)
echo "    $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KB)"

for extra in $EXTRAS; do
    venv="$WORK/venv-$extra"
    spec="$wheel"
    [ "$extra" = core ] || spec="$wheel[$extra]"
    label=edgeport; [ "$extra" = core ] || label="edgeport[$extra]"
    echo "==> $extra: fresh venv, torch==2.13.0 (the machine's CPU build), then pip install $label"
    start=$(date +%s)
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet torch==2.13.0 2>&1 | grep -v "WARNING: Location" || true
    "$venv/bin/pip" install --quiet "$spec" 2>&1 | grep -v "WARNING: Location" || true
    if [ "$extra" = all ] || [ "$extra" = tflite ]; then
        "$venv/bin/pip" install --quiet --no-deps --ignore-requires-python onnx2tf==2.6.9 2>&1 \
            | grep -v "WARNING: Location" || true
    fi
    seconds=$(( $(date +%s) - start ))
    size=$(du -sm "$venv/lib/python3.11/site-packages" | cut -f1)
    echo "    installed in ${seconds} s; site-packages ${size} MB"
    "$venv/bin/pip" check | sed 's/^/    pip check: /' || true
    (cd "$WORK" && "$venv/bin/edgeport" --help >/dev/null && echo "    edgeport --help: ok")
    (cd "$WORK" && "$venv/bin/edgeport" backends | sed 's/^/    /')
    # core: its default variants (ONNX); tflite/all: the TFLite path, whose onnx2tf came without pip's resolver
    variants=""
    case "$extra" in core) ;; tflite|all) variants="--variants onnx-fp32,tflite-fp32,tflite-int8-dynamic" ;; *) continue ;; esac
    echo "==> $extra: edgeport export + validate models/gender-vit ${variants:-(default variants)} from $WORK"
    (cd "$WORK" && "$venv/bin/edgeport" export "$REPO/models/gender-vit" --out "$WORK/gv-$extra" $variants \
        --calibration "$REPO/data/calib/gender" --no-progress | tail -3 \
     && "$venv/bin/edgeport" validate "$WORK/gv-$extra" --eval "$REPO/data/eval/gender" --no-progress | tail -8) || true
done
