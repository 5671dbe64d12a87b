"""Base fine-tuning config: BEiT's recipe as SymMIM uses it (docs/METHOD.md §5),
ViT-B/16 on ImageNet-1k at 224 px; `finetune.py:SIZE` sets the size's epochs,
warm-up and layer decay."""

import ml_collections

from symmim_jax.configs import common


def get_config():
    config = common.pretrained_encoder(common.get_config())
    config.epochs = 100
    config.warmup_epochs = 20.0
    config.input.crop_scale = (0.08, 1.0)  # the standard Inception crop
    config.model.drop_path = 0.1
    config.optim = ml_collections.ConfigDict(
        dict(
            base_lr=5e-3,
            base_batch_size=2048,  # lr = 5e-3 at the paper's batch 2048
            b1=0.9,
            b2=0.999,
            weight_decay=0.05,
            min_lr=1e-6,
            grad_clip_norm=0.0,  # BEiT fine-tunes without clipping
            layer_decay=0.65,
        )
    )
    config.finetune = ml_collections.ConfigDict(
        dict(
            eval_split="validation",
            label_smoothing=0.1,
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
            mixup_prob=1.0,  # chance a batch is mixed at all
            mixup_switch_prob=0.5,  # chance it is CutMix rather than Mixup
            ema_decay=0.0,  # EMA of the weights; 0 = off (0.9999 in DeiT)
        )
    )
    config.augment = ml_collections.ConfigDict(
        dict(
            randaug_num_ops=2,  # timm 'rand-m9-mstd0.5-inc1'
            randaug_magnitude=9.0,
            randaug_magnitude_std=0.5,
            reprob=0.25,  # random erasing probability
        )
    )
    return config
