# Two commands on a fresh machine: `make run` and `make test`. While working: `make check` (lint, types and the
# tests not marked slow) and `make fmt`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := $(VENV)/.fused-gru
CLIENT_VENV := .venv-client
CLIENT_BIN := $(CLIENT_VENV)/bin
CLIENT_STAMP := $(CLIENT_VENV)/.installed

.PHONY: setup run test check fmt lint typecheck unit fast client-test bench clean

setup: $(STAMP) $(KERNEL)

# the package with the Python client it depends on, a distribution of its own (clients/python)
$(STAMP): pyproject.toml constraints.txt clients/python/pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ./clients/python -e '.[dev,ray]'
	touch $(STAMP)

# builds training's fused GRU once for each version of its source, or says why it cannot
$(KERNEL): $(STAMP) models/fused_gru.cpp models/fused_gru.py
	$(BIN)/python -m models.fused_gru
	touch $(KERNEL)

# First start: train both modes on the bundled prices (docs/operations.md says how long it takes), then serve.
run: setup
	$(BIN)/latentcast train --if-missing --source bundled
	$(BIN)/latentcast serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# every test, the slowest 15 listed at the end: on two processes (as `fast` below), then the tests that time
# real processes (the "timing" marker) alone, so that nothing else runs on the other core while they measure
unit: setup
	$(BIN)/pytest -m "not timing" -q -n 2 --dist loadscope --durations=15
	$(BIN)/pytest -m timing -q --durations=5

# the tests not marked slow (pyproject.toml: deployment, soak, faults, fuzzing, retrains, processes), on two
# processes; loadscope keeps a module's tests on one process, so its module fixtures (trained models) build once
fast: setup
	$(BIN)/pytest -m "not slow" -q -n 2 --dist loadscope

# The client as a user installs it, alone in a venv of its own: torch must not be importable there. Its tests
# answer it with the service's recorded replies (clients/python/tests/recordings, which
# tests/service/test_client_recordings.py holds to what the service answers today).
client-test: $(CLIENT_STAMP)
	cd clients/python && ../../$(CLIENT_BIN)/python -m pytest -q

$(CLIENT_STAMP): constraints.txt clients/python/pyproject.toml $(wildcard clients/python/src/latentcast_client/*.py)
	rm -rf $(CLIENT_VENV)
	$(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt './clients/python[test]'
	$(CLIENT_BIN)/python -I -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") and "torch is installed beside the client")'
	touch $(CLIENT_STAMP)

test: lint typecheck unit client-test

check: lint typecheck fast

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every benchmark, each measuring its comparisons side by side in one run (not part of `make test`).
bench: setup
	$(BIN)/python -m bench.train_speed
	$(BIN)/python -m bench.streaming
	$(BIN)/python -m bench.fast_paths
	$(BIN)/python -m bench.http_latency --requests 1000
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.market
	$(BIN)/python -m bench.redis_parser

clean:
	rm -rf $(VENV) $(CLIENT_VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
