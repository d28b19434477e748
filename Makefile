# The two commands of the README: `make demo` (main job end to end) and `make test` (all tests).
SHELL := /bin/bash
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export GFORTRAN_ERROR_BACKTRACE := 0

.PHONY: setup test test-fast demo bench compare clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(PY) -m acoustic_inv.cli doctor
	$(PY) -m acoustic_inv.cli field swellex96 --engine kraken --freq 148 --source-depth 54 --out demo-out/tl_swellex96.png
	$(PY) -m acoustic_inv.cli demo --out demo-out

bench: setup
	$(PY) benchmarks/propagation.py
	$(PY) benchmarks/simulate.py
	$(PY) benchmarks/invert.py

# The side-by-side of every inference method on vina-gi (README, "Every method on vina-gi"); resumable.
# It needs the bench extras (sbi and six, for the NPE peer) beside the test ones.
compare:
	@ACOUSTIC_INV_EXTRAS=test,bench bash scripts/setup.sh
	@bash scripts/compare.sh

clean:
	rm -rf .venv demo-out .pytest_cache
