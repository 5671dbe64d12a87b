#!/usr/bin/env bash
# The first device check: the pretraining step's speed and memory measured on one
# H100 or H200 (SymMIM B/16 and L/16 in bfloat16; cuDNN vs XLA attention; remat
# none vs dots), each JSON line next to the AOT prediction of the same step for
# one such GPU. About 8 minutes on one GPU:
#
#   experiments/device_check.sh [OUT_DIR]          # measured.jsonl, predicted.jsonl
#   experiments/device_check.sh OUT_DIR --tiny     # any host (CI): the tiny 224 px config
#
# On the GPU host, jax must have its CUDA plugin (pip install "jax[cuda12]==0.10.2");
# the predictions compile for the GPU on the host's CPUs meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=${1:-experiments/device_check}
mkdir -p "$out"

if [ "${2:-}" = --tiny ]; then
  configs=("tests/tiny_config.py:pretrain,224 --config.batch_size=8")
  measured_attention=(xla)  # no cuDNN on a CPU
  predicted_attention=(cudnn)  # the FLOPs do not depend on it; one compile less
  remats=(none)
  steps=2 target=h100x1
else
  configs=("symmim_jax/configs/symmim.py:B/16 --config.batch_size=256"
           "symmim_jax/configs/symmim.py:L/16 --config.batch_size=64")
  measured_attention=(cudnn xla)
  predicted_attention=(cudnn xla)
  remats=(none dots)
  steps=10
  target=h100x1
  if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then target=h200x1; fi
fi

for entry in "${configs[@]}"; do
  read -r config overrides <<<"$entry"
  for remat in "${remats[@]}"; do
    for attention in cudnn xla; do
      flags=(--config="$config" $overrides --config.model.remat=$remat
             --config.model.attention_impl=$attention)
      # The prediction runs on the CPUs while the GPU measures.
      if [[ " ${predicted_attention[*]} " == *" $attention "* ]]; then
        "$py" -m symmim_jax.aot "${flags[@]}" --target=$target >>"$out/predicted.jsonl" &
      fi
      if [[ " ${measured_attention[*]} " == *" $attention "* ]]; then
        "$py" -m symmim_jax.benchmark "${flags[@]}" --steps=$steps --warmup=2 \
          >>"$out/measured.jsonl"
      fi
      wait
    done
  done
done
echo "measured: $(wc -l <"$out/measured.jsonl") lines, predicted: $(wc -l <"$out/predicted.jsonl") lines in $out"
