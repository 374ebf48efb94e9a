# Two commands do everything on a fresh machine: `make test` and `make demo`.
# Both create .venv and install rlctl with its dev extras; a second run skips the install
# unless pyproject.toml or this Makefile changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is installed first, pinned, so that no later range (transformers, trl) can pull a newer
# build with gigabytes of CUDA packages. On a machine without a GPU the pin resolves to the CPU
# wheel in pip's find-links (/opt/wheels here); on a laptop without that wheel, set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu. On a GPU node it is PyPI's CUDA build.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: test lint demo bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
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
	$(BIN)/python bench/judge_throughput.py

clean:
	rm -rf $(VENV) .rlctl .pytest_cache .ruff_cache
