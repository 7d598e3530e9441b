# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates (or refreshes) the virtual environment in .venv, then runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format venv clean promtool

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# promtool checks the Prometheus config, alert rules and rule unit tests (Debian's
# `prometheus` package); installed here when missing and we may use apt-get.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	  else echo "promtool is missing: install Debian's prometheus package" >&2; exit 1; fi; }

lint: venv promtool
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests
	$(BIN)/mypy
	sh deploy/prometheus/check.sh

format: venv
	$(BIN)/ruff format services tests
	$(BIN)/ruff check --fix services tests

test: lint
	$(BIN)/pytest

demo: venv
	$(BIN)/puente demo --duration 60

clean:
	rm -rf $(VENV) .puente .pytest_cache .mypy_cache .ruff_cache
