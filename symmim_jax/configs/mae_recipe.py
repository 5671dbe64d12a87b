"""MAE's pretraining recipe (He et al. 2022, Table 8), which ccMIM and MixMIM
also follow: AdamW betas (0.9, 0.95), lr 1.5e-4 per 256 images, weight decay
0.05, 40 warm-up epochs, crop scale (0.2, 1), no drop path, no clipping."""

from symmim_jax.configs import base_pretrain, common

SIZES = ("S/16", "B/16", "L/16")


def get_config(method: str, arg, *, batch_size: int, epochs: int):
    """The base pretraining config with MAE's recipe for `method`."""
    config = base_pretrain.get_config()
    config.method = method
    config.model.variant = common.size_arg(arg, "B/16", SIZES)
    config.batch_size = batch_size
    config.epochs = epochs
    config.warmup_epochs = 40.0
    config.optim.base_lr = 1.5e-4
    config.optim.base_batch_size = 256
    config.optim.b1, config.optim.b2 = 0.9, 0.95
    config.optim.weight_decay = 0.05
    config.optim.grad_clip_norm = 0.0
    config.input.crop_scale = (0.2, 1.0)
    config.model.drop_path = 0.0
    return config
