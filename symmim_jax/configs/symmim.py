"""SymMIM pretraining on ImageNet-1k at 224 px, by size (docs/METHOD.md §4):

  size   epochs  warm-up  paper top-1 (fine-tuned)
  S/16    300      10       83.0
  B/16    800      20       84.0
  L/16   1600      20       85.7

python -m symmim_jax.pretrain --config=symmim_jax/configs/symmim.py:B/16 \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/symmim_b16
"""

from symmim_jax.configs import base_pretrain, common

SIZES = {"S/16": (300, 10.0), "B/16": (800, 20.0), "L/16": (1600, 20.0)}


def get_config(arg=None):
    variant = common.size_arg(arg, "B/16", SIZES)
    config = base_pretrain.get_config()
    config.model.variant = variant
    config.epochs, config.warmup_epochs = SIZES[variant]
    return config
