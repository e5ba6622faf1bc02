# Every target bootstraps .venv from nothing but Python 3.11+ and this repository.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench locust chaos-soak clean

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

# Faults every 20-60 s against three instances and 300 SDK clients for $(MINUTES) minutes (30);
# report and plot under loadtest/results/. A one-minute version runs in `make test`.
chaos-soak: $(STAMP)
	$(BIN)/python -m loadtest.chaos_soak --minutes $(or $(MINUTES),30)

clean:
	rm -rf $(VENV) build *.egg-info
