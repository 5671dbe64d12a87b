"""Demo fine-tuning on Fashion-MNIST: the demo ViT-XS/4 at 32 px, one epoch
(937 steps at batch 64).

At one epoch, mixup/cutmix and random erasing only slow learning down, so the
demo turns them off (mixup_prob = reprob = 0); RandAugment, label smoothing,
layer decay, drop path and the schedule stay as in the recipe.

python -m symmim_jax.finetune --config=symmim_jax/configs/demo_finetune.py \
    --config.init_from=workdirs/demo --workdir=workdirs/demo_finetune

Without --config.init_from the same run starts from random initialization.
"""

from symmim_jax.configs import base_finetune, demo


def get_config():
    config = demo.data_and_model(base_finetune.get_config())
    config.input.crop_scale = (0.35, 1.0)  # 32 px: the Inception crop's 8% is too little
    config.model.drop_path = 0.1
    config.finetune.eval_split = "test"
    config.batch_size = 64
    config.epochs = 1
    config.warmup_epochs = 0.1
    config.finetune.mixup_prob = 0.0
    config.augment.reprob = 0.0
    config.optim.base_lr = 1e-3
    config.optim.base_batch_size = 64
    config.optim.layer_decay = 0.75
    config.log_every = 25
    config.checkpoint_every = 300
    return config
