"""Images <-> patch sequences, input normalization, and the pixel targets of reconstruction.

Patches are row-major over the patch grid; inside a patch the
``P = p * p * C`` values are in ``(p_row, p_col, C)`` order.
"""

import einops
import jax
import jax.numpy as jnp


def patchify(images: jax.Array, patch: int) -> jax.Array:
    """``[B, H, W, C] -> [B, N, patch * patch * C]``."""
    _, height, width, _ = images.shape
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not divisible by patch {patch}")
    return einops.rearrange(
        images, "b (gh ph) (gw pw) c -> b (gh gw) (ph pw c)", ph=patch, pw=patch
    )


def unpatchify(patches: jax.Array, patch: int, grid: tuple[int, int]) -> jax.Array:
    """``[B, N, patch * patch * C] -> [B, H, W, C]``, inverse of patchify."""
    gh, gw = grid
    return einops.rearrange(
        patches, "b (gh gw) (ph pw c) -> b (gh ph) (gw pw) c", gh=gh, gw=gw, ph=patch, pw=patch
    )


def pixel_targets(images: jax.Array, patch: int, norm_pix: bool) -> jax.Array:
    """Float32 reconstruction targets ``[B, N, P]``.

    With ``norm_pix`` each patch is standardised over its ``P`` values, as
    MAE's ``norm_pix_loss``; the statistics are taken in float32 so bfloat16
    inputs do not lose small per-patch variances.
    """
    target = patchify(images, patch).astype(jnp.float32)  # [B, N, P]
    if not norm_pix:
        return target
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, keepdims=True)
    return (target - mean) / jnp.sqrt(var + 1e-6)


def normalize(images, mean, std) -> jax.Array:
    """uint8 ``[..., 3]`` -> float32 ``(x / 255 - mean) / std``, the model's input."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (jnp.asarray(images).astype(jnp.float32) / 255.0 - mean) / std
