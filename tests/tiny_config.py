"""The demo config shrunk to a toy model, for tests that train.

Also a config file: `--config=tests/tiny_config.py` (from the repository root).
"""
from configs import demo


def get_config():
    """mu/4 ViT at 16 px (a 4 x 4 grid), small heads, batch 8."""
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
    return config
