"""SimMIM pretraining, ImageNet-1k, 224 px, 800 epochs (paper: ViT-B/16 83.8
top-1 fine-tuned). The base config is SimMIM's recipe (SymMIM follows it):
batch 2048, lr 8e-4, betas (0.9, 0.999), weight decay 0.05, 20 warm-up epochs,
drop path 0.1, crop scale (0.67, 1), gradient clipping 5.

python -m symmim_jax.pretrain --config=symmim_jax/configs/simmim.py:B/16 \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/simmim_b16
"""

from symmim_jax.configs import base_pretrain, common


def get_config(arg=None):
    config = base_pretrain.get_config()
    config.method = "simmim"
    config.model.variant = common.size_arg(arg, "B/16", ("S/16", "B/16", "L/16"))
    return config
