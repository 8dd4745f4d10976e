# Commercial-98K / YuYin. Two entry points for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.PHONY: help setup system-deps install test test-fast lint demo demo-clean bench bench-yuyin bench-yuyin-runs-1 bench-yuyin-runs-2 clean

help:
	@echo "make demo   - set up, then run the whole pipeline offline on the embedded mini corpus"
	@echo "make test   - set up, then run the test suite (needs ../shared/media)"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmark scripts under benchmarks/"
	@echo "make bench-yuyin - build (or reuse) the benchmark-size corpus, then every method x 3 seeds: the table (hours; not in CI)"

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

# The benchmark-size corpus (363 tracks, 2,040 ads; resumable, prints its time estimate) and the
# multi-seed table with intervals and significance (yuyin.bench). Hours on 2 cores; not in CI.
# The runs go to two processes (one per core) over one --out: each run is cached per method,
# seed and held-out category, so the last call only assembles the table.
BENCH_DIR ?= bench_work
BENCH_SEEDS ?= 0,1,2
BENCH_LOCO_SEEDS ?= 0
BENCH_STEPS ?= 300
BENCH_RUN = $(BIN)/python -m yuyin.cli benchmark --shards $(BENCH_DIR)/shards --seeds $(BENCH_SEEDS) \
	--loco-seeds $(BENCH_LOCO_SEEDS) --steps $(BENCH_STEPS) --out $(BENCH_DIR)/runs/stats
bench-yuyin: setup
	$(BIN)/python -m pipelines.demo --size benchmark --work-dir $(BENCH_DIR)
	$(MAKE) --no-print-directory -j2 bench-yuyin-runs-1 bench-yuyin-runs-2
	$(BENCH_RUN) --corpus-name "the benchmark corpus ($(BENCH_DIR))"

bench-yuyin-runs-1:
	$(BENCH_RUN) --methods cca,cbvmr,contrastive,yuyin,yuyin-no-wfm --loco-methods cbvmr,contrastive \
		> $(BENCH_DIR)/runs-1.log 2>&1 || (tail -5 $(BENCH_DIR)/runs-1.log; exit 1)

bench-yuyin-runs-2:
	$(BENCH_RUN) --methods yuyin-no-emotion,yuyin-no-video-music,yuyin-no-video-tag,yuyin-no-music-tag,yuyin-no-category \
		--loco-methods yuyin,yuyin-no-category > $(BENCH_DIR)/runs-2.log 2>&1 || (tail -5 $(BENCH_DIR)/runs-2.log; exit 1)

demo-clean:
	rm -rf demo_work

clean:
	rm -rf $(VENV) demo_work .pytest_cache
