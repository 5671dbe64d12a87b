"""The demo config shrunk to a toy model, for tests that train.

Also a config file: `--config=tests/tiny_config.py` (pretraining),
`--config=tests/tiny_config.py:finetune` or `:linear_probe`.
"""

from symmim_jax.configs import demo


def get_config(kind=None):
    """mu/4 ViT at 16 px (a 4 x 4 grid), small heads, batch 8; `kind`
    "finetune" or "linear_probe" gives that function's config."""
    if kind:
        return {"finetune": finetune, "linear_probe": linear_probe}[kind]()
    config = demo.get_config()
    config.model.variant = "mu/4"
    config.input.image_size = 16
    config.symmim.projector_hidden_dim = 16
    config.symmim.projector_out_dim = 8
    config.symmim.predictor_hidden_dim = 16
    for section in (config.mae, config.ccmim, config.mixmim):
        section.decoder_width, section.decoder_depth, section.decoder_heads = 16, 1, 2
    config.ccmim.projector_hidden_dim = 16
    config.ccmim.projector_out_dim = 8
    config.batch_size = 8
    config.knn.every = 0  # tests that want the monitor turn it on
    return config


def _shrink(config):
    """The toy model, size and batch of get_config() on a demo eval config."""
    tiny = get_config()
    config.model = tiny.model
    config.input.image_size = tiny.input.image_size
    config.batch_size = tiny.batch_size
    return config


def finetune():
    """configs/demo_finetune.py with the toy model (8 fake devices: batch 8)."""
    from symmim_jax.configs import demo_finetune

    return _shrink(demo_finetune.get_config())


def linear_probe():
    """configs/demo_linear_probe.py with the toy model."""
    from symmim_jax.configs import demo_linear_probe

    return _shrink(demo_linear_probe.get_config())
