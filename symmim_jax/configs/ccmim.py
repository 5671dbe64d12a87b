"""ccMIM pretraining, ImageNet-1k, 224 px, 800 epochs (paper: ViT-B/16 84.2
top-1 fine-tuned). ccMIM §C: "in line with MAE", lr 1.5e-4, weight decay 0.05,
batch 1024, cosine schedule, lambda 0.2 with the InfoNCE of eq. 7; the warm-up
is MAE's (the paper gives none).

python -m symmim_jax.pretrain --config=symmim_jax/configs/ccmim.py:B/16 \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/ccmim_b16
"""

from symmim_jax.configs import mae_recipe


def get_config(arg=None):
    return mae_recipe.get_config("ccmim", arg, batch_size=1024, epochs=800)
