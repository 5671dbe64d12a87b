"""MixMIM on a plain ViT, ImageNet-1k, 224 px, 300 epochs (paper Table 3: ViT-B/16
83.2). MixMIM Table 11: AdamW, lr 1.5e-4 per 256 images, weight decay 0.05,
betas (0.9, 0.95), 40 warm-up epochs, batch 1024; mixing cells 32 px, ratio 0.5,
8 x 512 decoder.

python -m symmim_jax.pretrain --config=symmim_jax/configs/mixmim.py:B/16 \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/mixmim_b16
"""

from symmim_jax.configs import mae_recipe


def get_config(arg=None):
    return mae_recipe.get_config("mixmim", arg, batch_size=1024, epochs=300)
