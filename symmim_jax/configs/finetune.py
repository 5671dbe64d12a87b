"""Fine-tuning on ImageNet-1k at 224 px, by size (docs/METHOD.md §5):

  size   epochs  warm-up  layer decay
  S/16    200       5       0.8
  B/16    100      20       0.65
  L/16     50       5       0.75

python -m symmim_jax.finetune --config=symmim_jax/configs/finetune.py:B/16 \
    --config.init_from=/ckpt/symmim_b16 --config.dataset.manual_dir=/data/imagenet \
    --workdir=/ckpt/symmim_b16_ft
"""

from symmim_jax.configs import base_finetune, common

SIZES = {"S/16": (200, 5.0, 0.8), "B/16": (100, 20.0, 0.65), "L/16": (50, 5.0, 0.75)}


def get_config(arg=None):
    variant = common.size_arg(arg, "B/16", SIZES)
    config = base_finetune.get_config()
    config.model.variant = variant
    config.epochs, config.warmup_epochs, config.optim.layer_decay = SIZES[variant]
    return config
