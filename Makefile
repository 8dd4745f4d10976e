# Commercial-98K / YuYin. Two entry points for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.PHONY: help setup system-deps install test test-fast lint demo demo-clean bench clean

help:
	@echo "make demo   - set up, then run the whole pipeline offline on the embedded mini corpus"
	@echo "make test   - set up, then run the test suite (needs ../shared/media)"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmark scripts under benchmarks/"

setup: system-deps $(STAMP)

# ffmpeg/ffprobe, fpcalc (Chromaprint), fluidsynth + a GM soundfont (demo music rendering).
system-deps:
	@bash scripts/install_system_deps.sh

$(STAMP): pyproject.toml requirements.lock requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

install: setup

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pipelines.cli doctor
	$(BIN)/python -m pytest -q --timeout=1800 tests

test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not slow" tests

lint: setup
	$(BIN)/ruff check .

demo: setup
	$(BIN)/python -m pipelines.demo

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

demo-clean:
	rm -rf demo_work

clean:
	rm -rf $(VENV) demo_work .pytest_cache
