"""Fine-tuning ViT-L/16 on ImageNet-1k: 50 epochs, 5 warm-up, layer decay 0.75 (METHOD §5).

python -m symmim_jax.finetune --config=configs/finetune_vit_l16.py \
    --config.init_from=/ckpt/symmim_vit_l16 --config.dataset.manual_dir=/data/imagenet \
    --workdir=/ckpt/symmim_vit_l16_ft
"""
from configs import finetune_base


def get_config():
    config = finetune_base.get_config()
    config.model.variant = "L/16"
    config.epochs = 50
    config.warmup_epochs = 5.0
    config.optim.layer_decay = 0.75
    return config
