"""SymMIM ViT-B/16, ImageNet-1k, 224 px, 800 epochs (paper: 84.0 top-1 fine-tuned).

python -m symmim_jax.pretrain --config=configs/symmim_vit_b16.py \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/symmim_b16
"""
from configs import base


def get_config():
    config = base.get_config()
    config.model.variant = "B/16"
    config.epochs = 800
    config.warmup_epochs = 20.0
    return config
