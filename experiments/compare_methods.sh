#!/usr/bin/env bash
# The comparison experiments of experiments/RESULTS.md on Fashion-MNIST with the
# demo model (symmim_jax/configs/demo.py: ViT-XS/4 at 32 px, one epoch of pretraining at
# batch 64), each pretraining then linear-probed (symmim_jax/configs/demo_linear_probe.py)
# and, for the method comparison, fine-tuned (symmim_jax/configs/demo_finetune.py).
#
# Usage: [SEED=S] experiments/compare_methods.sh GROUP [ROOT]
#   SEED (default 0) seeds every run of the group (initialization, data order,
#   augmentation, masks); ROOT defaults to workdirs/compare/seedS.
#   methods   every method's pretraining, probe and fine-tune, plus the from-scratch row
#   ablation  SymMIM with rec1 / rec1+rec2 / rec1+con ("all three" is the methods row),
#             probed, then fine-tuned
#   ratios    SimMIM random masking at ratios 0.4 and 0.8 (0.6 is the methods row)
# A step whose results are already there is skipped, so a stopped group reruns
# from where it stopped. Run two groups at once on two cores: one process per
# group uses the cores about as well as one process with both.
# Tables and the plot: python experiments/summarize_comparison.py workdirs/compare
set -euo pipefail
cd "$(dirname "$0")/.."
group=$1
seed=${SEED:-0}
root=${2:-workdirs/compare/seed$seed}
py=.venv/bin/python
mkdir -p "$root"

pretrain() {  # NAME [CONFIG OVERRIDES...]
  local name=$1; shift
  $py -m symmim_jax.pretrain --config=symmim_jax/configs/demo.py --workdir="$root/$name" \
    --config.seed="$seed" "$@" \
    >> "$root/$name.log" 2>&1
}

evaluate() {  # KIND(probe|finetune) NAME(pretraining, or "scratch")
  local kind=$1 name=$2 module config init=()
  if [[ $kind == probe ]]; then
    module=linear_probe config=symmim_jax/configs/demo_linear_probe.py
  else
    module=finetune config=symmim_jax/configs/demo_finetune.py
  fi
  [[ $name != scratch ]] && init=(--config.init_from="$root/$name")
  [[ -f $root/$kind-$name/results.json ]] && return
  $py -m symmim_jax.$module --config=$config "${init[@]}" --config.seed="$seed" \
    --workdir="$root/$kind-$name" >> "$root/$kind-$name.log" 2>&1
}

case $group in
  methods)
    pretrain symmim
    evaluate probe symmim; evaluate probe scratch
    evaluate finetune symmim; evaluate finetune scratch
    for method in simmim mae ccmim mixmim; do
      pretrain "$method" --config.method="$method"
      evaluate probe "$method"; evaluate finetune "$method"
    done ;;
  ablation)
    pretrain symmim-rec1 --config.symmim.weight_rec2=0 --config.symmim.weight_con=0
    evaluate probe symmim-rec1
    pretrain symmim-rec1-rec2 --config.symmim.weight_con=0
    evaluate probe symmim-rec1-rec2
    pretrain symmim-rec1-con --config.symmim.weight_rec2=0
    evaluate probe symmim-rec1-con
    for name in symmim-rec1 symmim-rec1-rec2 symmim-rec1-con; do
      evaluate finetune "$name"
    done ;;
  ratios)
    for ratio in 0.4 0.8; do
      pretrain "simmim-$ratio" --config.method=simmim --config.simmim.mask_ratio="$ratio"
      evaluate probe "simmim-$ratio"
    done ;;
  *) echo "unknown group $group: methods|ablation|ratios" >&2; exit 2 ;;
esac
