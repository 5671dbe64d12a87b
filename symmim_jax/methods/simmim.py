"""SimMIM (Xie et al. 2022; docs/METHOD.md §6): random masking of 32 px cells
(ratio 0.6), masked patches replaced by a learned mask token, a linear pixel
head and an L1 loss on the masked patches."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from symmim_jax.methods import base
from symmim_jax.models import vit
from symmim_jax.ops import losses, patches
from symmim_jax.train.step import LossOutput


class SimMIMNet(nn.Module):
    """Encoder + linear pixel head."""

    encoder: vit.VisionTransformer
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, mask, *, train: bool):
        tokens = self.encoder(images, mask, train=train)[:, 1:]  # [B, N, D]
        p = self.encoder.patch_size
        return nn.Dense(p * p * images.shape[-1], dtype=self.dtype, name="pixel_head")(
            tokens
        )  # [B, N, P]


class SimMIM(base.Method):
    name = "simmim"
    defaults = dict(
        mask_cell_size=32,  # pixels; random cells
        mask_ratio=0.6,  # of the cells
        norm_pix_target=False,
    )

    def __init__(self, config, total_steps: int):
        super().__init__(config, total_steps)
        self.net = SimMIMNet(self.encoder, self.dtype)

    @classmethod
    def check_config(cls, config):
        cell = base.mask_cell(config, cls.name, "mask_cell_size")
        cells_per_side = -(-base.grid_side(config) // cell)  # edge cells may be partial
        base.mask_ratio(config, cls.name, "mask_ratio", cells_per_side**2)

    def init_params(self, key, images):
        mask = jnp.zeros(images.shape[:1] + (self.num_patches,), bool)
        return self.net.init(key, images, mask, train=False)["params"]

    def masks(self, key, batch_size: int):
        """(mask,): bool[B, N], random cells of `mask_cell_size` px."""
        return self.random_cell_masks(key, batch_size)

    def loss(self, params, batch, key, *, target_params, method_state):
        images = batch["image"]
        mask_key, drop_key = jax.random.split(key)
        (mask,) = self.masks(mask_key, images.shape[0])
        pred = self.net.apply(
            {"params": params}, images, mask, train=True, rngs={"drop_path": drop_key}
        )
        target = patches.pixel_targets(images, self.patch, self.norm_pix_target)
        loss = losses.masked_l1(pred, target, mask)
        return LossOutput(loss, {"loss_rec": loss})

    def reconstruct(self, params, images, mask):
        return self.net.apply({"params": params}, images, mask, train=False)
