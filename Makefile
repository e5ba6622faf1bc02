# Every target bootstraps .venv from nothing but Python 3.11+ and this repository.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench locust clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/presence-gateway serve --dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python loadtest/bench.py caches

# The locust user against two local gateways, headless; report under loadtest/results/.
locust: $(STAMP)
	$(BIN)/python loadtest/locust_run.py --users $(or $(USERS),500) --seconds $(or $(SECONDS),60)

clean:
	rm -rf $(VENV) build *.egg-info
