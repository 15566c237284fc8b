# Sparkle-VLM developer commands. `make demo` and `make test` work from a fresh clone.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU-capable wheels this project is tested with; override for other platforms,
# e.g. `make venv TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: venv demo test test-slow test-all lint typecheck format bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: venv
	$(BIN)/sparkle demo --out demo-out

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: venv
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The default test run: lint, types, and every test not marked slow (about 10 minutes on 2 cores).
test: lint typecheck
	$(BIN)/python -m pytest -m "not slow" --doctest-modules src/sparkle_vlm tests $(PYTEST_ARGS)

test-slow: venv
	$(BIN)/python -m pytest -m slow tests $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

test-all: lint typecheck
	$(BIN)/python -m pytest --doctest-modules src/sparkle_vlm tests $(PYTEST_ARGS)

# Throughput benchmarks; each prints one JSON line (numbers in the README's performance section).
bench: venv
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/composite.py
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/eval_backends.py
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-out
