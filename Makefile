# One entry point for humans and CI.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fedsov-installed
OUT ?= runs/quickstart

.PHONY: setup browser quickstart test lint typecheck protos protos-check bench mutation clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

quickstart: setup
	$(VENV)/bin/fedsov simulate simulations/quickstart.toml --out $(OUT)

test: setup browser lint typecheck
	$(PY) -m pytest

# Headless Chromium renders `fedsov report` pages in the tests (Debian's package; as
# root it installs, elsewhere it says what to run: those tests then skip, except in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-headless-shell >/dev/null 2>&1 \
	|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	     && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	|| echo "make browser: no chromium; install it (apt-get install chromium) to run the report screenshot tests"

lint: setup
	$(VENV)/bin/ruff check fedsov tests benchmarks tools
	$(VENV)/bin/ruff format --check fedsov tests benchmarks tools
	$(VENV)/bin/lint-imports --no-cache  # the layers in .importlinter

typecheck: setup
	$(VENV)/bin/mypy

protos: setup
	$(PY) -m fedsov.proto.generate

protos-check: setup
	$(PY) -m fedsov.proto.generate --check

# Slow (about an hour on 2 cores), so not in CI. Results are cached in mutants/:
# a rerun tests only mutants of changed code; `rm -rf mutants` starts afresh.
mutation: setup
	$(VENV)/bin/mutmut run --max-children $$(nproc)
	$(PY) tools/mutation_score.py

bench: setup
	$(PY) benchmarks/upload_memory.py

clean:
	rm -rf $(VENV) runs mutants .pytest_cache .mypy_cache .ruff_cache
