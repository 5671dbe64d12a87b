"""The demo configs shrunk to a toy model, for tests that train.

Also a config file: `--config=tests/tiny_config.py[:KIND[,224]]`, KIND one of
pretrain (the default), finetune, probe; `224` makes it 224 px with patch 16.
"""

from symmim_jax.configs import demo


def get_config(arg=None):
    """mu/4 ViT at 16 px (a 4 x 4 grid), small heads, batch 8 (see the module
    docstring for `arg`)."""
    kind, _, size = (arg or "pretrain").partition(",")
    config = {"pretrain": pretrain, "finetune": finetune, "probe": linear_probe}[kind]()
    return at_224(config) if size == "224" else config


def pretrain():
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
    tiny = pretrain()
    config.model = tiny.model
    config.input.image_size = tiny.input.image_size
    config.batch_size = tiny.batch_size
    return config


def finetune():
    """symmim_jax/configs/demo_finetune.py with the toy model (8 fake devices: batch 8)."""
    from symmim_jax.configs import demo_finetune

    return _shrink(demo_finetune.get_config())


def linear_probe():
    """symmim_jax/configs/demo_linear_probe.py with the toy model."""
    from symmim_jax.configs import demo_linear_probe

    return _shrink(demo_linear_probe.get_config())


def at_224(config):
    """A 224 px, patch-16 version of a tiny config: 197 tokens as the ImageNet
    presets have, with the toy width and depth, in bfloat16 (what the AOT tests
    compile for GPUs and TPUs)."""
    config.model.variant = "mu/16"
    config.model.dtype = "bfloat16"
    config.input.image_size = 224
    config.input.eval_crop_pct = 0.875
    if "symmim" in config:
        config.symmim.online_cell_size, config.symmim.target_cell_size = 16, 32
        config.simmim.mask_cell_size = config.mixmim.mask_cell_size = 32
    return config
