"""A pretraining workdir holding one checkpoint of a given encoder, written
directly (no training), for the tests that restore encoders."""

import jax
import jax.numpy as jnp

from symmim_jax.models import vit
from symmim_jax.train import checkpoint


def encoder_params(variant: str, image_size: int, seed: int = 0):
    encoder = vit.build_encoder(vit_config(variant))
    images = jnp.zeros((1, image_size, image_size, 3))
    return encoder.init(jax.random.key(seed), images)["params"]


def vit_config(variant: str):
    import ml_collections

    return ml_collections.ConfigDict(
        dict(variant=variant, drop_path=0.0, dtype="float32", attention_impl=None, remat="none")
    )


def write_workdir(workdir, encoder, step: int = 7):
    """WORKDIR/checkpoints/<step> with params {'encoder', 'pixel_head'} and a
    target copy, like a SymMIM state."""
    state = {
        "step": jnp.asarray(step),
        "params": {"encoder": encoder, "pixel_head": {"kernel": jnp.ones((4, 2))}},
        "target_params": {"encoder": encoder},
    }
    manager = checkpoint.open_manager(str(workdir))
    checkpoint.save(manager, step, state, {"step": step}, force=True)
    manager.wait_until_finished()
    manager.close()
    return str(workdir)
