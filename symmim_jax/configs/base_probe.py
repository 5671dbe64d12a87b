"""Base linear-probing config (MAE protocol, docs/METHOD.md §5): frozen encoder,
BatchNorm without affine + linear layer, LARS, base lr 0.1 at batch 256 scaled
linearly, 90 epochs with 10 of warm-up, batch 16384."""

import ml_collections
from ml_collections.config_dict import placeholder

from symmim_jax.configs import common


def get_config():
    config = common.pretrained_encoder(common.get_config())
    config.batch_size = 16384
    config.epochs = 90
    config.warmup_epochs = 10.0
    config.input.crop_scale = (0.08, 1.0)  # MAE probes with crop + flip
    config.model.drop_path = 0.0
    config.optim = ml_collections.ConfigDict(
        dict(
            base_lr=0.1,
            base_batch_size=256,
            momentum=0.9,
            weight_decay=0.0,
            min_lr=0.0,
        )
    )
    config.probe = ml_collections.ConfigDict(
        dict(
            pool="cls",  # [CLS] or 'mean' of the patch tokens
            block=placeholder(int),  # features after this block; unset = last
            augment=True,  # False: features extracted once (fast path)
            train_examples=placeholder(int),  # first N training images (fast path); unset = all
            eval_split="validation",
        )
    )
    return config
