"""Linear probing on ImageNet-1k (MAE protocol, docs/METHOD.md §5), by size.

python -m symmim_jax.linear_probe --config=symmim_jax/configs/linear_probe.py:B/16 \
    --config.init_from=/ckpt/symmim_b16 --config.dataset.manual_dir=/data/imagenet \
    --workdir=/ckpt/symmim_b16_lin
"""

from symmim_jax.configs import base_probe, common


def get_config(arg=None):
    config = base_probe.get_config()
    config.model.variant = common.size_arg(arg, "B/16", ("S/16", "B/16", "L/16"))
    return config
