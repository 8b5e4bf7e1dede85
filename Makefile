# Two set-up commands: `make demo` and `make test`. Both install into .venv first (CPU only).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
DEMO_STEPS ?=
ABLATION ?= 0

.PHONY: install test demo lint format clean colab-check

# The package and what it needs to train, segment and score (no PyTorch), TensorFlow's CPU build.
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[cpu]'
	touch $@

# Tests also need the PyTorch reference: the CPU build of torch first, so that the `torch`
# extra's requirement is already satisfied and no CUDA build is pulled.
$(DEV): $(RUNTIME)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[cpu,notebooks,dev,torch]'
	touch $@

install: $(DEV)

test: $(DEV)
	$(PY) -m pytest

demo: $(RUNTIME)
	$(PY) -m lcm_jax.demo --out demo_out --ablation=$(ABLATION) $(if $(DEMO_STEPS),--steps=$(DEMO_STEPS),)

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(DEV)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Not part of `make test`: downloads TensorFlow. The notebooks' install cells in a copy of a Colab
# runtime (colab/runtime-constraints.txt); writes colab/COMPATIBILITY.md.
colab-check:
	$(PYTHON) colab/check_runtime.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
