"""MAE pretraining, ImageNet-1k, 224 px, 1600 epochs (paper: ViT-B/16 83.6 top-1
fine-tuned). Batch 4096 (lr = 1.5e-4 * 4096 / 256 = 2.4e-3), mask ratio 0.75,
8 x 512 decoder.

python -m symmim_jax.pretrain --config=symmim_jax/configs/mae.py:B/16 \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/mae_b16
"""

from symmim_jax.configs import mae_recipe


def get_config(arg=None):
    return mae_recipe.get_config("mae", arg, batch_size=4096, epochs=1600)
