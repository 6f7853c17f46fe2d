# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEQTOOL := $(BIN)/seqtool

.PHONY: install test lint test-kernels floors demo bench bench-panels plots clean

install: $(STAMP)

# torch first, pinned to the CPU build this machine serves from a local file: a range
# alone would let pip fetch a newer CUDA build of several GB (DEVELOPERS.md).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# The house rules a machine can check: ruff's lint and format, and the layers of the
# package (import-linter, contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The pinned runs under other kernels than this CPU's best (ATen's portable code; on x86-64
# also MKL's compatible mode and oneDNN's SSE4.1): other last bits, the same behaviour.
KERNELS := ATEN_CPU_CAPABILITY=default $(if $(filter x86_64,$(shell uname -m)),MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41)
test-kernels: $(STAMP)
	$(KERNELS) $(BIN)/python -m pytest -q tests/test_pinned.py

# Every dependency at the floor pyproject.toml gives, in .venv-floors; the suite on them.
floors:
	PYTHON=$(PYTHON) .ci/floors

demo: $(STAMP)
	mkdir -p out
	$(SEQTOOL) gen sine --seed 0 -o out/sine.csv
	$(SEQTOOL) gen sine --seed 1 --n-series 16 -o out/sine_fresh.csv
	$(SEQTOOL) train out/sine.csv --cell lstm -o out/lstm.pt --log out/lstm_log.csv
	$(SEQTOOL) predict out/lstm.pt out/sine_fresh.csv --warmup 5 -o out/predict.csv --metrics out/predict.json
	$(SEQTOOL) rollout out/lstm.pt out/sine_fresh.csv --warmup 10 -o out/rollout.csv --metrics out/rollout.json
	$(SEQTOOL) gen sincos --seed 0 -o out/sincos.csv
	$(SEQTOOL) gen integral --seed 0 -o out/integral.npz
	$(SEQTOOL) gen adding --length 100 --seed 0 -o out/adding.npz
	$(SEQTOOL) gen lorenz --seed 0 -o out/lorenz.csv
	$(SEQTOOL) gradnorm --cell rnn,lstm,gru --length 100 -o out/gradnorm.csv
	$(SEQTOOL) plot out/rollout.csv out/lstm_log.csv out/predict.csv out/sine.csv out/gradnorm.csv --outdir out/
	@echo "demo: tables, the model, its log, predictions, a rollout and their pictures are in out/"

# One image per table of out/, all drawn by one process; redrawn when a table changes.
TABLES := $(wildcard out/*.csv)
IMAGES := $(TABLES:out/%.csv=plots/%.png)
plots: $(IMAGES)
$(IMAGES) &: $(TABLES) | $(STAMP)
	$(SEQTOOL) plot $(TABLES) --outdir plots/

bench: $(STAMP)
	$(BIN)/python -m bench

# The competition panels (bench competition, and gaps on M1) need the bench extra (statsforecast holds pandas
# below 3): a venv of their own, with the test extra (the bench runs some of the tests' own code).
BENCH_VENV := .venv-bench
bench-panels:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q torch==2.13.0
	$(BENCH_VENV)/bin/pip install -q -e .[bench,test]
	$(BENCH_VENV)/bin/python -m bench competition gaps

clean:
	rm -rf out plots .pytest_cache .ruff_cache .import_linter_cache .venv-floors .venv-bench
