# The two commands the README gives: `make demo` (the main job) and `make test` (the whole suite).
# Both set up .venv, the real qvac CLI and the test model first; every step is idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck provision venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[dev]"
	touch $@

venv: $(BIN)/.installed

provision: venv
	$(BIN)/python tools/provision.py > $(VENV)/provisioned.env

demo: provision
	set -a && . ./$(VENV)/provisioned.env && set +a && $(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

test: provision lint typecheck
	set -a && . ./$(VENV)/provisioned.env && set +a && $(BIN)/python -m pytest
