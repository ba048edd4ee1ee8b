# Thin wrappers: every target bootstraps .venv (scripts/bootstrap-venv.sh) and calls
# the edgeport CLI or pytest. Logic lives in Python, not here.
VENV ?= .venv
PY := $(VENV)/bin/python
EDGEPORT := $(VENV)/bin/edgeport
CONFIG ?= edgeport.toml
export USE_TF := 0
export HF_HUB_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv export-all test clean help

help:
	@echo "make export-all   export + validate every model in $(CONFIG) into artifacts/"
	@echo "make test         run the test suite"
	@echo "make clean        remove artifacts/ outputs"

venv:
	@scripts/bootstrap-venv.sh

export-all: venv
	$(EDGEPORT) export-all --config $(CONFIG)

test: venv
	$(PY) -m pytest

clean:
	rm -rf artifacts/*/
