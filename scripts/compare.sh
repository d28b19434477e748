#!/usr/bin/env bash
# `make compare`: reproduces the README's side-by-side table (benchmarks/results/compare.{json,md}).
#
# Every step resumes where it stopped: a killed run continues with the same command; steps already
# finished are skipped. Data go to datasets/ (outside git). On 2 free cores (measured 2026-11-27): about
# 15 min of simulation (15,000 + 1,000 vina-gi samples and a 41 x 41 reference grid), then about 30 min
# of comparison (refining the reference posteriors with the engine, training every method, MCMC chains).
set -euo pipefail
cd "$(dirname "$0")/.."
ACI=".venv/bin/acoustic-inv"
PY=".venv/bin/python"
DATA="${DATA:-datasets}"
WORKERS="${WORKERS:-2}"
mkdir -p "$DATA"

complete() { [ -d "$1" ] && "$ACI" dataset info "$1" 2>/dev/null | grep -qE '^status +complete'; }

# The first 15,000 samples of the seed-0 vina-gi dataset: the same samples whatever -n (each sample's
# random stream depends only on the seed and its index), so a longer dataset made with the same seed
# may be passed instead via DATA_TRAIN.
TRAIN="${DATA_TRAIN:-$DATA/vina-gi-15k}"
complete "$TRAIN" || "$ACI" simulate --scenario vina-gi -n 15000 --out "$TRAIN" --workers "$WORKERS" --seed 0
complete "$DATA/vina-gi-test" || "$ACI" simulate --scenario vina-gi -n 1000 --out "$DATA/vina-gi-test" --workers "$WORKERS" --seed 1
[ -f "$DATA/vina-gi-grid41.nc" ] || "$ACI" reference grid --scenario vina-gi --out "$DATA/vina-gi-grid41.nc" --n-per-axis 41 --workers "$WORKERS"

"$PY" benchmarks/compare.py --data "$TRAIN" --test "$DATA/vina-gi-test" --grid "$DATA/vina-gi-grid41.nc" \
    --n-train 15000 --n-obs 5 --n-posterior 5000 --mcmc-obs 2 --mcmc-steps 1000 \
    --methods cinn_ml cinn_ens3 npe bartlett inn_fdiv_inverse_js inn_mmd inn_ml mcmc "$@"
