"""MAE (He et al. 2022; METHOD §6): the encoder sees only the visible 25% of
the patches; an 8-block, 512-wide decoder fills in mask tokens and predicts
per-patch normalized pixels, MSE on the masked patches."""
import jax
import jax.numpy as jnp

from symmim_jax import losses, masking, patches, tokens
from symmim_jax.methods import checks
from symmim_jax.models import decoder, vit


def visible_attention(mask):
    """bool[B, N] (True = masked) -> bool[B, 1 + N, 1 + N]: every token attends
    [CLS] and the visible patches only. Encoding all N patches under it gives
    the visible tokens of encoding only those: the masking of MAE for masks
    with any number of visible patches."""
    visible = jnp.pad(~mask, ((0, 0), (1, 0)), constant_values=True)  # [B, 1 + N]
    return jnp.broadcast_to(visible[:, None, :], visible.shape + visible.shape[1:])


class MAE:
    section = "mae"

    def __init__(self, config, total_steps: int):
        del total_steps
        self.config = config[self.section]
        self.encoder = vit.build_encoder(config.model)
        self.patch = self.encoder.patch_size
        self.decoder = decoder.build(self.config, self.patch, config.model.dtype)
        self.grid = (config.input.image_size // self.patch,) * 2
        self.num_patches = self.grid[0] * self.grid[1]

    def init(self, key, images):
        enc_key, dec_key = jax.random.split(key)
        encoder = self.encoder.init(enc_key, images)["params"]
        encoded = jnp.zeros(images.shape[:1] + (1 + self.num_patches, self.encoder.width))
        mask = jnp.zeros(images.shape[:1] + (self.num_patches,), bool)
        dec = self.decoder.init(dec_key, encoded, mask, self.grid)["params"]
        return {"encoder": encoder, "decoder": dec}, {}

    def masks(self, key, batch_size: int):
        """(mask,): bool[B, N], exactly round(mask_ratio * N) random patches."""
        return (masking.random_mask(key, batch_size, self.grid, 1, self.config.mask_ratio),)

    def encode_visible(self, params, images, mask, drop_key):
        """Encoder on [CLS] and the visible patches -> [B, 1 + N, D], zero at the
        masked patches; every row of `mask` must hide the same number."""
        num_visible = self.num_patches - round(self.config.mask_ratio * self.num_patches)
        order = tokens.visible_first(mask)
        encoded = self.encoder.apply({"params": params["encoder"]}, images, train=True,
                                     keep=order[:, :num_visible],
                                     rngs={"drop_path": drop_key})  # [B, 1 + K, D]
        return jnp.concatenate([encoded[:, :1], tokens.scatter(encoded[:, 1:], order)], 1)

    def decode(self, params, encoded, mask):
        return self.decoder.apply({"params": params["decoder"]}, encoded, mask, self.grid)

    def loss(self, params, target_params, images, key):
        del target_params
        mask_key, drop_key = jax.random.split(key)
        (mask,) = self.masks(mask_key, images.shape[0])
        pred = self.decode(params, self.encode_visible(params, images, mask, drop_key), mask)
        target = patches.pixel_targets(images, self.patch, self.config.norm_pix_target)
        loss = losses.masked_mse(pred, target, mask)
        return loss, {"loss_rec": loss}

    def reconstruct(self, params, images, mask):
        """Predictions [B, N, P] for any mask (any number of visible patches)."""
        encoded = self.encoder.apply({"params": params["encoder"]}, images,
                                     attention_mask=visible_attention(mask))
        return self.decode(params, encoded, mask)

    def update_target(self, target_params, params, step):
        del params, step
        return target_params, {}


def check_config(config):
    checks.mask_ratio(config, "mae", "mask_ratio", checks.grid_side(config) ** 2)
    decoder.check_config(config.mae, "mae")
