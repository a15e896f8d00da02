# The two commands of the README:
#   make up     -- run the main job (workhive up with the demo project)
#   make test   -- run the whole test suite (lint, types, unit, integration, failover)
# Each builds .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test venv protos lint typecheck bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q ".[dev,bench]"
	$(BIN)/python tools/devlink.py
	touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	$(BIN)/workhive up $(ARGS)

test: $(STAMP)
	$(BIN)/python tools/devlink.py >/dev/null
	$(BIN)/python -m pytest $(PYTEST_ARGS)

protos: $(STAMP)
	$(BIN)/python tools/gen_protos.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy -p workhive.coordinator -p workhive.agent

bench: $(STAMP)
	$(BIN)/python -m bench.run_all $(ARGS)

# The dashboard's browser tests, writing the PNGs that docs/dashboard.md shows.
screenshots: $(STAMP)
	$(BIN)/python tools/devlink.py >/dev/null
	WORKHIVE_SCREENSHOTS=docs/dashboard $(BIN)/python -m pytest tests/dashboard/test_browser.py -q

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
