# Two commands do everything on a fresh machine: `make test` and `make demo`.
# Both create .venv and install rlctl with its dev extras; a second run skips the install
# unless pyproject.toml or this Makefile changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
# Where there is no GPU, torch is pinned first, so that nothing later pulls the CUDA build.
# Elsewhere (a laptop without the local wheel) set TORCH_INDEX=https://download.pytorch.org/whl/cpu.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_INDEX ?=
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: test lint demo bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
ifeq ($(HAS_GPU),)
	$(PIP) "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
endif
	$(PIP) -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

bench: $(STAMP)
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/records_io.py

clean:
	rm -rf $(VENV) .rlctl .pytest_cache .ruff_cache
