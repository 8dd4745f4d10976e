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
	@echo "make bench-yuyin [BUDGET=small|full|none] - build (or reuse) the benchmark-size corpus, tune every method alike, then 3 seeds: table, plot, method card (hours; not in CI)"

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

# Three pytest workers on the 2 cores (each waits on subprocesses, Ray and files part of the time:
# 577 s on a fresh clone with a cold test cache; two took 762 s with a warm one); a module's tests stay on one worker,
# the Ray tests on one (tests/conftest.py). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 3

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pipelines.cli doctor
	$(BIN)/python -m pytest -q --timeout=1800 --durations=25 -n $(TEST_WORKERS) tests

test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not slow" tests

lint: setup
	$(BIN)/ruff check .

demo: setup
	$(BIN)/python -m pipelines.demo

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

# The benchmark-size corpus (363 tracks, 2,040 ads; resumable, prints its time estimate), then the
# tuned multi-seed benchmark (yuyin.bench, yuyin.tuning): every method gets the same grid search on
# the validation split (BUDGET=small, about 2 h here on 2 quiet cores; full, about a day; none: the
# untuned BENCH_STEPS steps), then 3 seeds, the oracle/shuffled emotion runs, the plot and the
# method card. The runs go to two processes (one per core) over one --out: each search and each run
# is cached, so a stopped run continues and the last call only assembles the table.
BENCH_DIR ?= bench_work
BENCH_SEEDS ?= 0,1,2
BENCH_LOCO_SEEDS ?= 0
BENCH_STEPS ?= 300
BUDGET ?= small
BENCH_OUT = $(BENCH_DIR)/runs/stats-$(BUDGET)
BENCH_TUNING = $(if $(filter none,$(BUDGET)),--steps $(BENCH_STEPS),--budget $(BUDGET))
BENCH_RUN = $(BIN)/python -m yuyin.cli benchmark --shards $(BENCH_DIR)/shards --seeds $(BENCH_SEEDS) \
	--loco-seeds $(BENCH_LOCO_SEEDS) $(BENCH_TUNING) --track-moods $(BENCH_DIR)/catalog/corpus.json --out $(BENCH_OUT)

bench-yuyin: setup
	$(BIN)/python -m pipelines.demo --size benchmark --work-dir $(BENCH_DIR)
	$(if $(filter none,$(BUDGET)),,$(BENCH_RUN) --estimate)
	$(MAKE) --no-print-directory -j2 bench-yuyin-runs-1 bench-yuyin-runs-2
	$(BENCH_RUN) --corpus-name "the benchmark corpus ($(BENCH_DIR), truth music ids)"

# Two halves of about equal cost; each tunes the methods it runs (a method's leave-one-category-out
# runs use its own recipe, so they stay with it).
bench-yuyin-runs-1:
	$(BENCH_RUN) --methods cca,cbvmr,contrastive,yuyin-no-wfm,yuyin-no-emotion,yuyin-no-category \
		--loco-methods cbvmr,contrastive,yuyin-no-category > $(BENCH_DIR)/runs-1.log 2>&1 || (tail -5 $(BENCH_DIR)/runs-1.log; exit 1)

bench-yuyin-runs-2:
	$(BENCH_RUN) --methods yuyin,yuyin-no-video-music,yuyin-no-video-tag,yuyin-no-music-tag,yuyin-oracle-emotion,yuyin-shuffled-emotion \
		--loco-methods yuyin > $(BENCH_DIR)/runs-2.log 2>&1 || (tail -5 $(BENCH_DIR)/runs-2.log; exit 1)

demo-clean:
	rm -rf demo_work

clean:
	rm -rf $(VENV) demo_work .pytest_cache
