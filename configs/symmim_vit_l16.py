"""SymMIM ViT-L/16, ImageNet-1k, 224 px, 1600 epochs (paper: 85.7 top-1 fine-tuned).

python -m symmim_jax.pretrain --config=configs/symmim_vit_l16.py \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/symmim_l16
"""
from configs import base


def get_config():
    config = base.get_config()
    config.model.variant = "L/16"
    config.epochs = 1600
    config.warmup_epochs = 20.0
    return config
