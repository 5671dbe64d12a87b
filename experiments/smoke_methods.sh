#!/usr/bin/env bash
# Smoke pretraining of every method through the CLI on the toy config
# (tests/tiny_config.py: mu/4 ViT, Fashion-MNIST at 16 px): 30 steps, batch 32,
# lr 1.5e-3, a loss line per step. Prints the mean loss of steps 1-5 and 26-30.
# Usage: experiments/smoke_methods.sh [WORKDIR_ROOT]   (default /tmp/symmim_smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-/tmp/symmim_smoke}
for method in symmim simmim mae ccmim mixmim; do
  rm -rf "$root/$method"
  .venv/bin/python -m symmim_jax.pretrain --config=tests/tiny_config.py \
    --config.method="$method" --config.batch_size=32 --config.optim.base_batch_size=32 \
    --config.total_steps=30 --config.log_every=1 --config.checkpoint_every=100 \
    --config.visualize_every=15 --workdir="$root/$method" > "$root.$method.log" 2>&1
  .venv/bin/python - "$root/$method/metrics.jsonl" "$method" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
loss = [r["train/loss"] for r in rows]
print(f"{sys.argv[2]:8s} steps {len(loss)}  loss 1-5 {sum(loss[:5]) / 5:.4f}  "
      f"26-30 {sum(loss[-5:]) / 5:.4f}  ratio {sum(loss[-5:]) / sum(loss[:5]):.3f}")
PY
done
