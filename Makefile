# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates (or refreshes) the virtual environment in .venv, then runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format services tests
	$(BIN)/ruff check --fix services tests

test: lint
	$(BIN)/pytest

demo: venv
	$(BIN)/puente demo --duration 60

clean:
	rm -rf $(VENV) .puente .pytest_cache .mypy_cache .ruff_cache
