"""SimMIM ViT-B/16, ImageNet-1k, 224 px, 800 epochs (paper: 83.8 top-1 fine-tuned).

python -m symmim_jax.pretrain --config=configs/simmim_vit_b16.py \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/simmim_b16

The base config is SimMIM's recipe (SymMIM follows it): batch 2048, lr 8e-4,
betas (0.9, 0.999), weight decay 0.05, 20 warm-up epochs, drop path 0.1,
crop scale (0.67, 1), gradient clipping 5.
"""
from configs import base


def get_config():
    config = base.get_config()
    config.method = "simmim"
    config.model.variant = "B/16"
    config.epochs = 800
    config.warmup_epochs = 20.0
    return config
