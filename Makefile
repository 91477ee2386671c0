# One command to run, one to test; each builds the virtual environment it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: start the daemon against the built-in simulated cloud
run: $(STAMP)
	$(BIN)/jobwatchd run --simulate -c config/simulate.toml

## test: lint, type-check and run the whole test suite
test: lint unit

lint: $(STAMP)
	$(BIN)/ruff check jobwatchd tests
	$(BIN)/ruff format --check jobwatchd tests
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
