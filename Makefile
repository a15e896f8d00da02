# The two commands of the README:
#   make up     -- run the main job (workhive up with the demo project)
#   make test   -- run the whole test suite (lint, types, unit, integration, failover)
# Each builds .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LINKS  := $(VENV)/.linked
# `pip install -e .` in setuptools' strict editable mode: a link tree in
# build/__editable__.*, on a .pth path, that mypy, grimp and ruff follow like
# installed files (the default mode's import hook hides them from such tools).
STRICT := --config-settings editable_mode=strict
# The link tree has one link per file: adding or removing a file in a package
# folder changes the folder's mtime, and the tree is re-linked.
PKG_DIRS := $(shell find proto/workhive coordinator agent client -type d -not -name __pycache__ 2>/dev/null)

.PHONY: up test venv protos lint typecheck bench screenshots clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(STRICT) -e ".[dev,bench]"
	touch $(STAMP) $(LINKS)

$(LINKS): $(STAMP) $(PKG_DIRS)
	$(BIN)/pip install -q --no-deps $(STRICT) -e .
	touch $(LINKS)

venv: $(LINKS)

up: $(LINKS)
	$(BIN)/workhive up $(ARGS)

test: $(LINKS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

protos: $(LINKS)
	$(BIN)/python tools/gen_protos.py

lint: $(LINKS)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(LINKS)
	$(BIN)/mypy -p workhive.coordinator -p workhive.agent -p workhive.client

bench: $(LINKS)
	$(BIN)/python -m bench.run_all $(ARGS)

# The dashboard's browser tests, writing the PNGs that docs/dashboard.md shows.
screenshots: $(LINKS)
	WORKHIVE_SCREENSHOTS=docs/dashboard $(BIN)/python -m pytest tests/dashboard/test_browser.py -q

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
