# Thin wrappers: every target bootstraps .venv (scripts/bootstrap-venv.sh) and calls
# the edgeport CLI or pytest. Logic lives in Python, not here.
VENV ?= .venv
PY := $(VENV)/bin/python
EDGEPORT := $(VENV)/bin/edgeport
CONFIG ?= edgeport.toml
export USE_TF := 0
export HF_HUB_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv test-deps export-all gate test bench bench-serve matrix serve check-install train-models docs clean help

help:
	@echo "make export-all   export + validate every model in $(CONFIG) into artifacts/ (EXPORT_ARGS=\"--shard 2/4\": CI runner 2 of 4)"
	@echo "make gate         fail on any report's missed budget (GATE_ARGS=\"--baseline DIR\" for regressions, GATE_ARGS=DIR: every report below DIR)"
	@echo "make test         run the test suite (installs what it needs: .venv, chromium)"
	@echo "make bench        ViT-B/16 export/latency benchmark -> artifacts/bench/bench.md (BENCH_ARGS=...)"
	@echo "make matrix       every architecture x variant, validated -> docs/compatibility.md (MATRIX_ARGS=...)"
	@echo "make bench-serve  load-test edgeport serve against a hand-written PyTorch server (BENCH_SERVE_ARGS=...)"
	@echo "make serve        serve a validated model over HTTP on 127.0.0.1:8080 (SERVE_ARGS=\"artifacts/NAME ...\")"
	@echo "make check-install build the wheel, pip-install it into fresh venvs (core, [serve], [all]) and try each (EXTRAS=...)"
	@echo "make docs         regenerate docs/cli.md from the CLI parser, and docs/images/report.png from artifacts/gender-vit/report.html"
	@echo "make train-models retrain the bundled models (needs ../shared/datasets; see training/README.md)"
	@echo "make clean        remove artifacts/ outputs"

venv:
	@scripts/bootstrap-venv.sh

# What the suite needs beyond .venv (a headless chromium), installed when missing.
test-deps:
	@scripts/provision-test.sh

# e.g. make export-all EXPORT_ARGS="--shard 2/4" (runner 2 of 4; `make gate GATE_ARGS=DIR` gates them all)
EXPORT_ARGS ?=
export-all: venv
	$(EDGEPORT) export-all --config $(CONFIG) $(EXPORT_ARGS)

# e.g. make gate GATE_ARGS="--baseline baseline-artifacts/"
gate: venv
	$(EDGEPORT) gate --config $(CONFIG) $(GATE_ARGS)

test: venv test-deps
	$(PY) -m pytest

# e.g. make bench BENCH_ARGS="--validate-eval ../shared/datasets/utkface/eval"
bench: venv
	$(EDGEPORT) bench --config $(CONFIG) $(BENCH_ARGS)

# e.g. make matrix MATRIX_ARGS="--arch vit,swin --variants onnx-fp32,savedmodel-fp32"
matrix: venv
	$(EDGEPORT) matrix --config $(CONFIG) $(MATRIX_ARGS)

# e.g. make bench-serve BENCH_SERVE_ARGS="--arch vit-b16" (default: the exported gender-vit)
BENCH_SERVE_ARGS ?= artifacts/gender-vit
bench-serve: venv
	$(EDGEPORT) bench-serve --config $(CONFIG) $(BENCH_SERVE_ARGS)

# e.g. make serve SERVE_ARGS="artifacts/emotion-vit --port 9000"
SERVE_ARGS ?= artifacts/gender-vit
serve: venv
	$(EDGEPORT) serve $(SERVE_ARGS)

# e.g. make check-install EXTRAS="core tflite" (minutes; needs the package index)
EXTRAS ?= core serve all
check-install: venv
	@EXTRAS="$(EXTRAS)" scripts/check-install.sh

# Reproduces models/ and data/ from the shared datasets (about an hour per model on 1 core).
train-models: venv
	$(PY) -m training.make_subsets --out data
	$(PY) -m training.train_vit --recipe training/recipes/gender.toml --out models/gender-vit
	$(PY) -m training.evaluate --recipe training/recipes/gender.toml --model models/gender-vit
	$(PY) -m training.train_vit --recipe training/recipes/emotion.toml --out models/emotion-vit
	$(PY) -m training.evaluate --recipe training/recipes/emotion.toml --model models/emotion-vit

# docs/cli.md from the argparse parser (tests/test_cli_reference.py fails when it is stale), and the
# README's screenshot of report.html (skipped, with a message, without the report or a Chromium).
docs: venv
	$(PY) -m edgeport.cli_reference docs/cli.md
	$(PY) -m edgeport.report_screenshot --skip-missing artifacts/gender-vit/report.html docs/images/report.png

clean:
	rm -rf artifacts/*/
