"""MAE ViT-B/16, ImageNet-1k, 224 px, 1600 epochs (paper: 83.6 top-1 fine-tuned).

python -m symmim_jax.pretrain --config=configs/mae_vit_b16.py \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/mae_b16

Batch 4096 (lr = 1.5e-4 * 4096 / 256 = 2.4e-3), mask ratio 0.75, 8 x 512 decoder.
"""
from configs import base, mae_recipe


def get_config():
    config = mae_recipe.apply(base.get_config())
    config.method = "mae"
    config.model.variant = "B/16"
    config.batch_size = 4096
    config.epochs = 1600
    return config
