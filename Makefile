# Two commands on a fresh machine:
#   make run    set up and run the service on the embedded defaults (local SQLite, offline LLM)
#   make test   set up and pass the tests (ruff, mypy, pytest; needs PostgreSQL at 127.0.0.1:5432,
#               and installs Debian's chromium for the ops page's browser tests if it is missing)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint check install clean bench-ingest bench-load browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m app demo
	$(BIN)/python -m app serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Debian's chromium for the ops page's browser tests (Playwright drives it; it downloads none).
browser:
	./scripts/ensure-chromium.sh

test: lint browser
	./scripts/ensure-postgres.sh
	$(BIN)/python -m pytest -q

check: test

bench-ingest: $(STAMP)
	$(BIN)/python -m bench.ingest

bench-load: $(STAMP)
	$(BIN)/python -m bench.load_api --clients 200 --seconds 30

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
