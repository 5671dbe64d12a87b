#!/usr/bin/env bash
# Short-run momentum (experiments/RESULTS.md): the demo config shortened to
# STEPS steps, once per EMA base momentum, one run after another.
#
# Usage: experiments/momentum_runs.sh [ROOT] [STEPS]   (default workdirs/momentum 100)
#   m0.996  the long runs' momentum (the demo's before the run-length rule)
#   m0.99   MoCo v3's
#   rule    momentum_base unset: ops/ema.py run_length_momentum (0.9 below 200 steps)
# Every run logs the loss terms every 5 steps to ROOT/NAME/metrics.jsonl; a run
# already finished is skipped. Table: python experiments/summarize_momentum.py ROOT
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-workdirs/momentum}
steps=${2:-100}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$root"

run() {  # NAME [CONFIG OVERRIDES...]
  local name=$1; shift
  /usr/bin/time -v $py -m symmim_jax.pretrain --config=symmim_jax/configs/demo.py \
    --workdir="$root/$name" --config.total_steps="$steps" --config.log_every=5 \
    --config.checkpoint_every="$steps" --config.visualize_every=0 "$@" \
    >> "$root/$name.log" 2>&1
}

run rule
run m0.996 --config.symmim.momentum_base=0.996
run m0.99 --config.symmim.momentum_base=0.99
