"""MixMIM on a plain ViT (Liu et al. 2023, Table 3; docs/METHOD.md §6).

Each image is mixed with its partner (the previous image of the batch): the
patches of random 32 px cells (ratio 0.5) come from the partner. The encoder
sees the mixed image with attention restricted to each token's own image; the
tokens are then unmixed into two sequences, each filled with the decoder's
mask token where the other image was, and decoded: dual reconstruction of both
images' hidden patches, MSE on normalized pixels.

[CLS] (a choice; the paper's encoder has none): it attends only to itself and
every patch may attend to it, so it carries no image content across (it is the
same for every input) yet is trained like a learned register token.
"""

import jax
import jax.numpy as jnp

from symmim_jax.methods import base
from symmim_jax.models import decoder
from symmim_jax.ops import losses, patches
from symmim_jax.train.step import LossOutput


def group_attention(from_partner):
    """bool[B, N] (True = patch from the partner) -> bool[B, 1 + N, 1 + N]:
    a patch attends the patches of its own image and [CLS]; [CLS] itself."""
    batch, num = from_partner.shape
    group = jnp.concatenate(
        [jnp.full((batch, 1), 2), from_partner.astype(jnp.int32)], axis=1
    )  # [B, 1 + N]: 2 = [CLS]
    same = group[:, :, None] == group[:, None, :]  # [B, 1 + N, 1 + N]
    return same | (jnp.arange(1 + num) == 0)[None, None, :]


def partners(x):
    """Each image's partner: the previous one in the batch (the first takes the last)."""
    return jnp.roll(x, 1, axis=0)


class MixMIM(base.Method):
    name = "mixmim"
    defaults = dict(
        mask_cell_size=32,  # pixels; random cells taken from the partner
        mask_ratio=0.5,
        norm_pix_target=True,
        **decoder.DEFAULTS,
    )

    def __init__(self, config, total_steps: int):
        super().__init__(config, total_steps)
        self.decoder = decoder.build(self.config, self.patch, self.dtype)

    @classmethod
    def check_config(cls, config):
        cell = base.mask_cell(config, cls.name, "mask_cell_size")
        base.mask_ratio(config, cls.name, "mask_ratio", (-(-base.grid_side(config) // cell)) ** 2)
        decoder.check_config(config[cls.name], cls.name)
        base.at_least_two_images(config, "MixMIM", "mixes pairs of images")

    def init_params(self, key, images):
        return decoder.init_with_encoder(self.encoder, self.decoder, key, images, self.grid)

    def masks(self, key, batch_size: int):
        """(mask,): bool[B, N], True where the mixed image shows the partner."""
        return self.random_cell_masks(key, batch_size)

    def mix(self, images, mask):
        """images [B, H, W, C] -> the mixed images: partner's patches where mask."""
        own = patches.patchify(images, self.patch)  # [B, N, P]
        mixed = jnp.where(mask[..., None], partners(own), own)
        return patches.unpatchify(mixed, self.patch, self.grid)

    def dual_predictions(self, params, images, mask, *, train: bool, drop_key=None):
        """-> (own image's pixels [B, N, P] predicted where mask, partner's
        pixels [B, N, P] predicted where ~mask)."""
        encoded = self.encoder.apply(
            {"params": params["encoder"]},
            self.mix(images, mask),
            train=train,
            attention_mask=group_attention(mask),
            rngs={"drop_path": drop_key} if train else {},
        )  # [B, 1 + N, D]
        # Unmix: one sequence per source image, the other's patches hidden.
        pred = self.decoder.apply(
            {"params": params["decoder"]},
            jnp.concatenate([encoded, encoded]),
            jnp.concatenate([mask, ~mask]),
            self.grid,
        )
        return jnp.split(pred, 2)

    def loss(self, params, batch, key, *, target_params, method_state):
        images = batch["image"]
        mask_key, drop_key = jax.random.split(key)
        (mask,) = self.masks(mask_key, images.shape[0])
        own, partner = self.dual_predictions(params, images, mask, train=True, drop_key=drop_key)
        target = patches.pixel_targets(images, self.patch, self.norm_pix_target)
        terms = {
            "loss_rec_own": losses.masked_mse(own, target, mask),
            "loss_rec_partner": losses.masked_mse(partner, partners(target), ~mask),
        }
        # Mean over every reconstructed patch (eq. 2 up to a constant factor).
        loss = losses.masked_mse(
            jnp.concatenate([own, partner]),
            jnp.concatenate([target, partners(target)]),
            jnp.concatenate([mask, ~mask]),
        )
        return LossOutput(loss, terms)

    def reconstruct(self, params, images, mask):
        """Each image's pixels predicted where `mask` put its partner's patches."""
        return self.dual_predictions(params, images, mask, train=False)[0]
