"""Linear probing on ImageNet-1k (MAE protocol, METHOD §5): frozen encoder,
BatchNorm without affine + linear layer, LARS, base lr 0.1 at batch 256 scaled
linearly, 90 epochs with 10 of warm-up, batch 16384.

python -m symmim_jax.linear_probe --config=configs/linear_probe.py \
    --config.model.variant=B/16 --config.init_from=/ckpt/symmim_vit_b16 \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/symmim_vit_b16_lin
"""
from ml_collections.config_dict import placeholder

from configs import base


def get_config():
    config = base.get_config()
    del config.symmim, config.knn
    config.method = "linear_probe"
    config.init_from = placeholder(str)    # pretraining workdir; unset = random init
    config.init_step = placeholder(int)
    config.batch_size = 16384
    config.epochs = 90
    config.warmup_epochs = 10.0
    config.eval_every = 0                  # steps between evaluations; 0 = every epoch
    config.checkpoint_every = 1000
    config.visualize_every = 0
    config.input.crop_scale = (0.08, 1.0)  # MAE probes with crop + flip
    config.model.drop_path = 0.0
    config.optim = dict(
        base_lr=0.1,
        base_batch_size=256,
        momentum=0.9,
        weight_decay=0.0,
        min_lr=0.0,
    )
    config.probe = dict(
        pool="cls",                        # [CLS] or 'mean' of the patch tokens
        block=placeholder(int),            # features after this block; unset = last
        augment=True,                      # False: features extracted once (fast path)
        train_examples=placeholder(int),   # first N training images (fast path); unset = all
        eval_split="validation",
    )
    return config
