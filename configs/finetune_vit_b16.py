"""Fine-tuning ViT-B/16 on ImageNet-1k: 100 epochs, 20 warm-up, layer decay 0.65 (METHOD §5).

python -m symmim_jax.finetune --config=configs/finetune_vit_b16.py \
    --config.init_from=/ckpt/symmim_vit_b16 --config.dataset.manual_dir=/data/imagenet \
    --workdir=/ckpt/symmim_vit_b16_ft
"""
from configs import finetune_base


def get_config():
    config = finetune_base.get_config()
    config.model.variant = "B/16"
    config.epochs = 100
    config.warmup_epochs = 20.0
    config.optim.layer_decay = 0.65
    return config
