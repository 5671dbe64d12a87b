"""SimMIM (Xie et al. 2022; METHOD §6): random masking of 32 px cells (ratio
0.6), masked patches replaced by a learned mask token, a linear pixel head and
an L1 loss on the masked patches."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from symmim_jax import losses, masking, patches
from symmim_jax.methods import checks
from symmim_jax.models import vit


class SimMIMNet(nn.Module):
    """Encoder + linear pixel head."""
    encoder: vit.VisionTransformer
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, mask, *, train: bool):
        tokens = self.encoder(images, mask, train=train)[:, 1:]  # [B, N, D]
        p = self.encoder.patch_size
        return nn.Dense(p * p * images.shape[-1], dtype=self.dtype,
                        name="pixel_head")(tokens)  # [B, N, P]


class SimMIM:
    def __init__(self, config, total_steps: int):
        del total_steps  # no schedule of its own
        self.encoder = vit.build_encoder(config.model)
        self.net = SimMIMNet(self.encoder, jnp.dtype(config.model.dtype))
        self.config = config.simmim
        self.patch = self.encoder.patch_size
        self.grid = (config.input.image_size // self.patch,) * 2

    def init(self, key, images):
        mask = jnp.zeros(images.shape[:1] + (self.grid[0] * self.grid[1],), bool)
        return self.net.init(key, images, mask, train=False)["params"], {}

    def masks(self, key, batch_size: int):
        """(mask,): bool[B, N], random cells of `mask_cell_size` px."""
        sc = self.config
        return (masking.random_mask(key, batch_size, self.grid,
                                    sc.mask_cell_size // self.patch, sc.mask_ratio),)

    def loss(self, params, target_params, images, key):
        del target_params
        mask_key, drop_key = jax.random.split(key)
        (mask,) = self.masks(mask_key, images.shape[0])
        pred = self.net.apply({"params": params}, images, mask, train=True,
                              rngs={"drop_path": drop_key})
        target = patches.pixel_targets(images, self.patch, self.config.norm_pix_target)
        loss = losses.masked_l1(pred, target, mask)
        return loss, {"loss_rec": loss}

    def reconstruct(self, params, images, mask):
        return self.net.apply({"params": params}, images, mask, train=False)

    def update_target(self, target_params, params, step):
        del params, step
        return target_params, {}


def check_config(config):
    cell = checks.mask_cell(config, "simmim", "mask_cell_size")
    cells_per_side = -(-checks.grid_side(config) // cell)  # edge cells may be partial
    checks.mask_ratio(config, "simmim", "mask_ratio", cells_per_side ** 2)
