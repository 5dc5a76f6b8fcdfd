# Two commands on a fresh machine: `make run` and `make test`. While working: `make check` (lint, types and the
# tests not marked slow) and `make fmt`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := $(VENV)/.fused-gru

.PHONY: setup run test check fmt lint typecheck unit fast bench clean

setup: $(STAMP) $(KERNEL)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,ray]'
	touch $(STAMP)

# builds training's fused GRU (about 30 s) once for each version of its source, or says why it cannot
$(KERNEL): $(STAMP) models/fused_gru.cpp models/fused_gru.py
	$(BIN)/python -m models.fused_gru
	touch $(KERNEL)

# First start: train both modes on the bundled prices (about 20 s on 2 quiet cores, about 100 s beside another
# training on cores other work keeps busy: docs/operations.md), then serve.
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

test: lint typecheck unit

check: lint typecheck fast

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every benchmark, each measuring its comparisons side by side in one run (a few minutes; not part of `make test`).
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
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
