# One entry point for humans and CI.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fedsov-installed
OUT ?= runs/quickstart

.PHONY: setup quickstart test lint typecheck protos protos-check bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

quickstart: setup
	$(VENV)/bin/fedsov simulate simulations/quickstart.toml --out $(OUT)

test: setup lint typecheck
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check fedsov tests benchmarks
	$(VENV)/bin/ruff format --check fedsov tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

protos: setup
	$(PY) -m fedsov.proto.generate

protos-check: setup
	$(PY) -m fedsov.proto.generate --check

bench: setup
	$(PY) benchmarks/upload_memory.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
