"""MAE-style pixel decoder, shared by MAE, ccMIM and MixMIM.

Encoder tokens are projected to the decoder width, masked patches become a
learned mask token, a fixed 2-D sin-cos position embedding is added, then
pre-norm blocks (the encoder's `EncoderBlock`), a norm and a linear map to the
p*p*3 pixels of each patch.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from symmim_jax.models import vit

# MAE's decoder (config.<method>.decoder_*): 8 blocks, 512 wide, 16 heads.
DEFAULTS = dict(decoder_width=512, decoder_depth=8, decoder_heads=16)


class Decoder(nn.Module):
    width: int
    depth: int
    num_heads: int
    patch_size: int
    channels: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, grid: tuple[int, int]):
        """x [B, 1 + N, D_enc] ([CLS] first; masked rows are ignored), mask
        bool[B, N] True = predict this patch -> pixels [B, N, p*p*C]."""
        x = nn.Dense(self.width, dtype=self.dtype, name="embed")(x)  # [B, 1 + N, W]
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.width))
        patches = jnp.where(mask[..., None], mask_token.astype(x.dtype), x[:, 1:])
        patches = patches + vit.sincos_pos_embed_2d(grid, self.width).astype(x.dtype)
        x = jnp.concatenate([x[:, :1], patches], axis=1)
        for i in range(self.depth):
            x = vit.EncoderBlock(self.num_heads, dtype=self.dtype, name=f"blocks_{i}")(
                x, deterministic=True
            )
        x = nn.LayerNorm(vit.LAYER_NORM_EPS, dtype=self.dtype, name="norm")(x)
        return nn.Dense(self.patch_size**2 * self.channels, dtype=self.dtype, name="pred")(x[:, 1:])


def build(section, patch_size: int, dtype) -> Decoder:
    """Decoder from a method's config section (decoder_width/depth/heads)."""
    return Decoder(
        width=section.decoder_width,
        depth=section.decoder_depth,
        num_heads=section.decoder_heads,
        patch_size=patch_size,
        dtype=jnp.dtype(dtype),
    )


def init_with_encoder(encoder, decoder: Decoder, key, images, grid) -> dict:
    """{"encoder", "decoder"} parameters of an encoder-decoder method."""
    enc_key, dec_key = jax.random.split(key)
    num_patches = grid[0] * grid[1]
    encoded = jnp.zeros(images.shape[:1] + (1 + num_patches, encoder.width))
    mask = jnp.zeros(images.shape[:1] + (num_patches,), bool)
    return {
        "encoder": encoder.init(enc_key, images)["params"],
        "decoder": decoder.init(dec_key, encoded, mask, grid)["params"],
    }


def check_config(section, name: str):
    """The decoder fields of config.<name>; raises ValueError naming the field."""
    width, depth, heads = section.decoder_width, section.decoder_depth, section.decoder_heads
    if depth < 1 or heads < 1:
        raise ValueError(
            f"config.{name}.decoder_depth={depth} and decoder_heads={heads} must be >= 1."
        )
    if width < 4 or width % 4 or width % heads:
        raise ValueError(
            f"config.{name}.decoder_width={width} must be a multiple of 4 (sin-cos "
            f"position embedding) and of config.{name}.decoder_heads={heads}."
        )
