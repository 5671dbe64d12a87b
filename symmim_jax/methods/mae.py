"""MAE (He et al. 2022; docs/METHOD.md §6): the encoder sees only the visible 25% of
the patches; an 8-block, 512-wide decoder fills in mask tokens and predicts
per-patch normalized pixels, MSE on the masked patches."""

import jax
import jax.numpy as jnp

from symmim_jax.methods import base
from symmim_jax.models import decoder
from symmim_jax.ops import losses, masking, patches, tokens
from symmim_jax.train.step import LossOutput


def visible_attention(mask):
    """bool[B, N] (True = masked) -> bool[B, 1 + N, 1 + N]: every token attends
    [CLS] and the visible patches only. Encoding all N patches under it gives
    the visible tokens of encoding only those: the masking of MAE for masks
    with any number of visible patches."""
    visible = jnp.pad(~mask, ((0, 0), (1, 0)), constant_values=True)  # [B, 1 + N]
    return jnp.broadcast_to(visible[:, None, :], visible.shape + visible.shape[1:])


class MAE(base.Method):
    name = "mae"
    defaults = dict(
        mask_ratio=0.75,  # of the patches; the encoder sees the rest
        norm_pix_target=True,
        **decoder.DEFAULTS,
    )

    def __init__(self, config, total_steps: int):
        super().__init__(config, total_steps)
        self.decoder = decoder.build(self.config, self.patch, self.dtype)
        self.num_masked = round(self.config.mask_ratio * self.num_patches)

    @classmethod
    def check_config(cls, config):
        base.mask_ratio(config, cls.name, "mask_ratio", base.grid_side(config) ** 2)
        decoder.check_config(config[cls.name], cls.name)

    def init_params(self, key, images):
        return decoder.init_with_encoder(self.encoder, self.decoder, key, images, self.grid)

    def masks(self, key, batch_size: int):
        """(mask,): bool[B, N], exactly round(mask_ratio * N) random patches."""
        return (masking.random_mask(key, batch_size, self.grid, 1, self.config.mask_ratio),)

    def encode_visible(self, params, images, mask, drop_key):
        """Encoder on [CLS] and the visible patches -> [B, 1 + N, D], zero at the
        masked patches; every row of `mask` must hide `num_masked`."""
        order = tokens.visible_first(mask)
        encoded = self.encoder.apply(
            {"params": params["encoder"]},
            images,
            train=True,
            keep=order[:, : self.num_patches - self.num_masked],
            rngs={"drop_path": drop_key},
        )  # [B, 1 + K, D]
        return jnp.concatenate([encoded[:, :1], tokens.scatter(encoded[:, 1:], order)], 1)

    def decode(self, params, encoded, mask):
        return self.decoder.apply({"params": params["decoder"]}, encoded, mask, self.grid)

    def loss(self, params, batch, key, *, target_params, method_state):
        images = batch["image"]
        mask_key, drop_key = jax.random.split(key)
        (mask,) = self.masks(mask_key, images.shape[0])
        pred = self.decode(params, self.encode_visible(params, images, mask, drop_key), mask)
        target = patches.pixel_targets(images, self.patch, self.norm_pix_target)
        loss = losses.masked_mse(pred, target, mask)
        return LossOutput(loss, {"loss_rec": loss})

    def reconstruct(self, params, images, mask):
        """Predictions [B, N, P] for any mask (any number of visible patches)."""
        encoded = self.encoder.apply(
            {"params": params["encoder"]}, images, attention_mask=visible_attention(mask)
        )
        return self.decode(params, encoded, mask)
