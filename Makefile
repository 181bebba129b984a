# The two commands of the README:
#   make book   set up .venv and build the executed book into _build/html
#   make test   set up .venv and run the whole test suite (lint, unit tests, every chapter)
# Both work on a fresh clone: `setup` creates the virtual environment when it is missing or
# when requirements.txt / pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup book test test-unit lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# -W: a warning (a broken cross-reference, a missing file) fails the build;
# a cell that raises stops it (_config.yml: allow_errors false).
book: setup
	$(BIN)/python tests/bookcache.py
	$(BIN)/jupyter-book build . --builder html -W --keep-going

test: setup lint
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check src tests

clean:
	rm -rf _build
