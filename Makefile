# Two commands for a fresh machine (see README):
#   make quickstart   create .venv, install, run the main job on the embedded default
#   make test         create .venv, install with test extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.crosearch-installed

.PHONY: quickstart test test-slow test-distributed lint install clean shipped-embeddings

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/crosearch quickstart

test: lint
	$(BIN)/python -m pytest -q

# ruff (lint + format) and mypy, configured in pyproject.toml; `make test` runs them first.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy

# Tests that load the real bundled model (a few minutes on 2 cores).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# DDP on two CPU processes and every GPU recipe for one step on CPU (minutes; CI runs them).
test-distributed: $(STAMP)
	$(BIN)/python -m pytest -q -m distributed

# Re-encode the vendored passages into the shipped embeddings (after a change of the passages or
# of the bundled encoder); resumable through the embedding cache in runs/emb-cache.
shipped-embeddings: $(STAMP)
	nice -n 10 $(BIN)/python -c 'from crosearch.retrieval.shipped import build_shipped; print(build_shipped("runs/emb-cache"))'

clean:
	rm -rf $(VENV) runs .pytest_cache
