# The README's contract: `make demo` and `make test` work on a fresh machine with only python3 (>= 3.11).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install install-dev demo test lint emulator bench floors clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "batchcert needs Python 3.11+"' && $(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e . && touch $@

$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]' && touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime

install-dev: $(VENV)/.dev

demo: install
	$(BIN)/batchcert run inputs/demo.csv --world inputs/demo-world.json --yes --out reports/demo-$$(date -u +%Y%m%dT%H%M%SZ); test $$? -le 1

test: install-dev lint  # bytecode cached even under PYTHONDONTWRITEBYTECODE: ~90 child processes import the same modules
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check batchcert tests && $(BIN)/ruff format --check batchcert tests
	$(BIN)/mypy && $(BIN)/lint-imports

emulator: install
	$(BIN)/batchcert emulator --port 8765 --world inputs/demo-world.json

bench: install-dev
	$(BIN)/python -m tests.bench

floors:  # the suite on the lowest version of every dependency pyproject allows (docs/dependencies.md)
	rm -rf .venv-floors && $(PYTHON) -m venv .venv-floors && .venv-floors/bin/pip install -q uv && .venv-floors/bin/uv pip install -q --python .venv-floors/bin/python --resolution lowest-direct -e '.[dev]'
	.venv-floors/bin/pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .venv-floors .mypy_cache .ruff_cache .pytest_cache
