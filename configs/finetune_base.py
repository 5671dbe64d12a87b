"""Base fine-tuning config: BEiT's recipe as SymMIM uses it (METHOD §5), ViT-B/16
on ImageNet-1k at 224 px. Presets override the size, epochs, warm-up and layer decay.

python -m symmim_jax.finetune --config=configs/finetune_vit_b16.py \
    --config.init_from=/ckpt/symmim_vit_b16 --workdir=/ckpt/symmim_vit_b16_ft
"""
from ml_collections.config_dict import placeholder

from configs import base


def get_config():
    config = base.get_config()
    del config.symmim, config.knn
    config.method = "finetune"
    config.init_from = placeholder(str)    # pretraining workdir; unset = random init
    config.init_step = placeholder(int)    # its step; unset = the newest
    config.epochs = 100
    config.warmup_epochs = 20.0
    config.eval_every = 0                  # steps between evaluations; 0 = every epoch
    config.checkpoint_every = 1000
    config.visualize_every = 0
    config.input.crop_scale = (0.08, 1.0)  # the standard Inception crop
    config.model.drop_path = 0.1
    config.optim.base_lr = 5e-3
    config.optim.base_batch_size = 2048    # lr = 5e-3 at the paper's batch 2048
    config.optim.min_lr = 1e-6
    config.optim.grad_clip_norm = 0.0      # BEiT fine-tunes without clipping
    config.optim.layer_decay = 0.65
    config.finetune = dict(
        eval_split="validation",
        label_smoothing=0.1,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        mixup_prob=1.0,                    # chance a batch is mixed at all
        mixup_switch_prob=0.5,             # chance it is CutMix rather than Mixup
        ema_decay=0.0,                     # EMA of the weights; 0 = off (0.9999 in DeiT)
    )
    config.augment = dict(
        randaug_num_ops=2,                 # timm 'rand-m9-mstd0.5-inc1'
        randaug_magnitude=9.0,
        randaug_magnitude_std=0.5,
        reprob=0.25,                       # random erasing probability
    )
    return config
