"""ccMIM ViT-B/16, ImageNet-1k, 224 px, 800 epochs (paper: 84.2 top-1 fine-tuned).

python -m symmim_jax.pretrain --config=configs/ccmim_vit_b16.py \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/ccmim_b16

ccMIM §C: "in line with MAE", lr 1.5e-4, weight decay 0.05, batch 1024, cosine
schedule, lambda 0.2 with the InfoNCE of eq. 7. The warm-up is MAE's (the paper
gives none).
"""
from configs import base, mae_recipe


def get_config():
    config = mae_recipe.apply(base.get_config())
    config.method = "ccmim"
    config.model.variant = "B/16"
    config.batch_size = 1024
    config.epochs = 800
    return config
