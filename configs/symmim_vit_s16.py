"""SymMIM ViT-S/16, ImageNet-1k, 224 px, 300 epochs (paper: 83.0 top-1 fine-tuned).

python -m symmim_jax.pretrain --config=configs/symmim_vit_s16.py \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/symmim_s16
"""
from configs import base


def get_config():
    config = base.get_config()
    config.model.variant = "S/16"
    config.epochs = 300
    config.warmup_epochs = 10.0
    return config
