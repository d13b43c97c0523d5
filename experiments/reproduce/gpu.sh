#!/usr/bin/env bash
# The whole ML-1M reproduction table on one GPU in one go: every row x seed, PARALLEL runs
# sharing the card, then results/ml1m.json, RESULTS.md and run_curves.json written to $OUT.
#
#   bash experiments/reproduce/gpu.sh                 # from anywhere; OUT defaults to /tmp/reproduce
#   OUT=/data/out PARALLEL=8 TIME_LIMIT_S=540 bash experiments/reproduce/gpu.sh
#   ROWS=best_exclude_window,best_exclude_window_x3 bash experiments/reproduce/gpu.sh
#   ROWS=best SEEDS=0 PARALLEL=1 bash experiments/reproduce/gpu.sh   # one run alone: its wall time
#
# Environment: OUT (results; default /tmp/reproduce), ROWS (reproduce.py --rows: only these
# rows; default every row), SEEDS (reproduce.py --seeds: these seeds instead of each row's
# three), PARALLEL (runs at once, default 6),
# TIME_LIMIT_S (default 540: runs still going then are stopped, reported as not finished,
# and resume when the script runs again on the same machine), WORKDIR_ROOT (default
# /tmp/reproduce/runs/<table>: run directories hold checkpoints, so they stay out of $OUT),
# TABLE (default experiments/reproduce/ml1m.py), PYTHON (default python3).
#
# It runs from the source tree with the interpreter's own packages (no `pip install -e .`:
# the lent GPU machines are offline and lack tensorflow-datasets, ml-collections and
# tensorboardX). ml-collections and tensorboardX, pure Python, install from ./.whl/ when that
# folder holds their wheels; a ./.data/ folder is linked as ../shared/data when the latter is
# missing. experiments/reproduce/README.md says how to prepare both, and what one H200 session
# measured (early_runs/gpu_h200_2026-12-04.json): size TIME_LIMIT_S from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
TABLE=${TABLE:-experiments/reproduce/ml1m.py}
OUT=${OUT:-/tmp/reproduce}
PARALLEL=${PARALLEL:-6}
TIME_LIMIT_S=${TIME_LIMIT_S:-540}
WORKDIR_ROOT=${WORKDIR_ROOT:-/tmp/reproduce/runs/$(basename "$TABLE" .py)}
start=$(date +%s)
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$PYTHON" -c "import ml_collections, tensorboardX" 2>/dev/null; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "error: $PYTHON cannot import ml_collections or tensorboardX and ./.whl/ has no wheels to install" >&2
    exit 1
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/reproduce_site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/reproduce_site"
fi
if [ ! -e ../shared/data ] && [ -d .data ]; then
  mkdir -p ../shared && ln -s "$PWD/.data" ../shared/data
fi
"$PYTHON" -c "import jax, flax, optax, orbax.checkpoint as ocp
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', ocp.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true

# Every run is its own process: cap each one's share of the card instead of preallocating.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
XLA_PYTHON_CLIENT_MEM_FRACTION=$("$PYTHON" -c "print(f'{0.9 / $PARALLEL:.2f}')")
export XLA_PYTHON_CLIENT_MEM_FRACTION
args=(experiments/reproduce/reproduce.py --table="$TABLE" --workdir_root="$WORKDIR_ROOT" --out_dir="$OUT")
rows=(${ROWS:+--rows="$ROWS"} ${SEEDS:+--seeds="$SEEDS"})
# At the limit SIGTERM ends the whole process group: the runs then in flight stay unfinished
# (no error.txt, they resume on a rerun), and the tables below are written all the same.
timeout --kill-after=30 "$TIME_LIMIT_S" "$PYTHON" "${args[@]}" "${rows[@]}" --parallel="$PARALLEL" \
  2>&1 | tee "$OUT/gpu_log.txt" || true
"$PYTHON" "${args[@]}" --report_only 2>&1 | tee -a "$OUT/gpu_log.txt"
# What the stopped runs still tell (their checkpoints stay on the machine): curves and timing.
"$PYTHON" experiments/reproduce/run_curves.py --runs="$(dirname "$WORKDIR_ROOT")" \
  --out="$OUT/run_curves.json" --note="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), \
PARALLEL=$PARALLEL, TIME_LIMIT_S=$TIME_LIMIT_S" 2>&1 | tee -a "$OUT/gpu_log.txt"
echo "finished in $(( $(date +%s) - start )) s: $OUT/RESULTS.md, $OUT/results/" | tee -a "$OUT/gpu_log.txt"
