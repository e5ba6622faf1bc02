# Every target bootstraps .venv from nothing but Python 3.11+ and this repository.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench bench-check locust chaos-soak clean

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

# Fan-out and heartbeat CPU against the committed baseline (loadtest/results/bench-check.md);
# fails on a regression beyond the measured noise. UPDATE=1 writes a new baseline. ~3 minutes.
bench-check: $(STAMP)
	$(BIN)/python loadtest/bench_check.py $(if $(UPDATE),--update)

# The locust user against two local gateways, headless; report under loadtest/results/.
locust: $(STAMP)
	$(BIN)/python loadtest/locust_run.py --users $(or $(USERS),500) --seconds $(or $(SECONDS),60)

# Faults every 20-60 s against three instances and 300 SDK clients for $(MINUTES) minutes (30);
# REDIS=cluster runs it on a 3+3 Valkey Cluster (a primary killed among the faults). Report and
# plot under loadtest/results/. A one-minute version runs in `make test`.
chaos-soak: $(STAMP)
	$(BIN)/python -m loadtest.chaos_soak --minutes $(or $(MINUTES),30) --redis $(or $(REDIS),single)

clean:
	rm -rf $(VENV) build *.egg-info
