"""Fine-tuning ViT-S/16 on ImageNet-1k: 200 epochs, 5 warm-up, layer decay 0.8 (METHOD §5).

python -m symmim_jax.finetune --config=configs/finetune_vit_s16.py \
    --config.init_from=/ckpt/symmim_vit_s16 --config.dataset.manual_dir=/data/imagenet \
    --workdir=/ckpt/symmim_vit_s16_ft
"""
from configs import finetune_base


def get_config():
    config = finetune_base.get_config()
    config.model.variant = "S/16"
    config.epochs = 200
    config.warmup_epochs = 5.0
    config.optim.layer_decay = 0.8
    return config
