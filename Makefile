# Two set-up commands: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STEPS ?=
ABLATION ?= 0

.PHONY: install test demo lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch first: a later `torch>=...` requirement is then already satisfied.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,torch]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest

demo: install
	$(PY) -m lcm_jax.demo --out demo_out --ablation=$(ABLATION) $(if $(DEMO_STEPS),--steps=$(DEMO_STEPS),)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
