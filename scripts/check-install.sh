#!/usr/bin/env bash
# Build edgeport's wheel and install it, with pip's own resolver, into fresh Python 3.11 virtual
# environments, one per install a user would pick (`make check-install`; EXTRAS="export serve all").
# In each: `pip check`, `edgeport --help`, `edgeport backends`; with [export] (and [tflite], [all])
# also `edgeport export` + `validate` of the bundled gender-vit, from a folder outside the
# repository; with [serve] or [serve-openvino] (no torch) `edgeport serve` of that export (or
# artifacts/gender-vit), its fastest variant and its tflite-fp32:
# time to ready, RSS, and whether torch/transformers/tensorflow are installed at all. Prints wall
# time and site-packages size per install. Needs the package index (minutes, GBs for [all]); not
# part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3.11}
EXTRAS=${EXTRAS:-export serve all}
WORK=$(mktemp -d -t edgeport-install-XXXXXX)
server=""
# `|| true`: under set -e a failing command in the EXIT trap becomes the script's status (a server
# that has already exited cannot be killed)
trap '[ -z "$server" ] || kill "$server" 2>/dev/null || true; rm -rf "$WORK"' EXIT
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
    start=$(date +%s)
    "$PYTHON" -m venv "$venv"
    if [ "$extra" = core ] || [ "${extra#serve}" != "$extra" ]; then  # no torch in these installs
        echo "==> $extra: fresh venv, pip install $label"
    else  # the machine's CPU build of torch first: the index's is a CUDA build of several GB
        echo "==> $extra: fresh venv, torch==2.13.0 (the machine's CPU build), then pip install $label"
        "$venv/bin/pip" install --quiet torch==2.13.0 2>&1 | grep -v "WARNING: Location" || true
    fi
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
    if [ "${extra#serve}" != "$extra" ]; then
      model="$WORK/gv-export"; [ -f "$model/report.json" ] || model="$REPO/artifacts/gender-vit"
      for variant in "" tflite-fp32; do  # the fastest that passed (an ONNX one), then a TFLite one
        echo "==> $extra: edgeport serve $model ${variant:+--variant $variant} (installed: $("$venv/bin/python" -c \
            "import importlib.util as u; print([m for m in ('torch', 'transformers', 'tensorflow') if u.find_spec(m)] or 'no torch, transformers or tensorflow')"))"
        t0=$(date +%s.%N)
        (cd "$WORK" && exec "$venv/bin/edgeport" serve "$model" --port 8971 --threads 1 ${variant:+--variant $variant} \
            >"$WORK/serve.log" 2>&1) &
        server=$!
        until curl -sf http://127.0.0.1:8971/health >/dev/null; do sleep 0.05; kill -0 $server 2>/dev/null || break; done
        ready=$(echo "$(date +%s.%N) - $t0" | bc)
        if ! curl -sf http://127.0.0.1:8971/health >/dev/null; then
            echo "    the server did not start; its log ends with:"; tail -5 "$WORK/serve.log" | sed 's/^/    /'
            kill $server 2>/dev/null || true; server=""; continue
        fi
        images=("$REPO"/data/eval/gender/female/*.jpg); image=${images[0]}  # not ls | head: pipefail
        for _ in $(seq 50); do curl -s -o /dev/null --data-binary @"$image" -H 'Content-Type: image/jpeg' \
            http://127.0.0.1:8971/ || true; done
        pid=$server
        echo "    ready in ${ready} s; RSS after 50 requests $(( $(grep VmRSS /proc/$pid/status | awk '{print $2}') / 1024 )) MB"
        curl -s --data-binary @"$image" -H 'Content-Type: image/jpeg' http://127.0.0.1:8971/ | sed 's/^/    /'; echo
        kill $server; wait $server 2>/dev/null || true
        server=""
      done
      continue
    fi
    # export: its default variants (ONNX); tflite/all: the TFLite path, whose onnx2tf came without pip's resolver
    variants=""
    case "$extra" in export) ;; tflite|all) variants="--variants onnx-fp32,tflite-fp32,tflite-int8-dynamic" ;; *) continue ;; esac
    echo "==> $extra: edgeport export + validate models/gender-vit ${variants:-(default variants)} from $WORK"
    (cd "$WORK" && "$venv/bin/edgeport" export "$REPO/models/gender-vit" --out "$WORK/gv-$extra" $variants \
        --calibration "$REPO/data/calib/gender" --no-progress | tail -3 \
     && "$venv/bin/edgeport" validate "$WORK/gv-$extra" --eval "$REPO/data/eval/gender" --no-progress | tail -8) || true
done
