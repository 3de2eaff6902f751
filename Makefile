# Two entry points (see README "Quickstart"): `make repro` and `make test`.
# Both create .venv from uv.lock first, so a fresh clone needs only Python 3.11 and git.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: env system-deps repro test lint format clean

env: $(VENV)/.synced

# uv installs exactly what uv.lock pins; --inexact keeps pip and uv themselves in the venv.
$(VENV)/.synced: pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade >/dev/null
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv sync --frozen --inexact --extra dev --python $(BIN)/python
	@touch $@

## Run the whole pipeline on the embedded demo data (DVC runs only what changed).
repro: env
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

## System packages the tests need (PostgreSQL server, Java 17, Chromium), when missing.
system-deps:
	@bash .ci/system-deps

## Lint, format check, and the whole test suite.
test: env lint system-deps
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: env
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
