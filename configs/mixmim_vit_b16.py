"""MixMIM on a plain ViT-B/16, ImageNet-1k, 224 px, 300 epochs (paper Table 3: 83.2).

python -m symmim_jax.pretrain --config=configs/mixmim_vit_b16.py \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/mixmim_b16

MixMIM Table 11: AdamW, lr 1.5e-4 per 256 images, weight decay 0.05, betas
(0.9, 0.95), 40 warm-up epochs, batch 1024; mixing cells 32 px, ratio 0.5,
8 x 512 decoder.
"""
from configs import base, mae_recipe


def get_config():
    config = mae_recipe.apply(base.get_config())
    config.method = "mixmim"
    config.model.variant = "B/16"
    config.batch_size = 1024
    config.epochs = 300
    return config
