"""Fixed-size subsets of patch tokens: gather some, scatter them back.

Masks with the same number of visible patches in every image give index arrays
of a static shape [B, K], so these are plain batched gathers
(`take_along_axis`): they jit, and shard over the batch with no communication.
"""

import jax
import jax.numpy as jnp


def visible_first(mask: jax.Array) -> jax.Array:
    """bool[B, N] (True = masked) -> int32[B, N], a permutation of the patch
    indices: the visible ones first, then the masked ones, each increasing.

    With K visible patches in every image, `order[:, :K]` are the visible
    patches and `order[:, K:]` the masked ones.
    """
    return jnp.argsort(mask, axis=-1, stable=True).astype(jnp.int32)


def gather(x: jax.Array, indices: jax.Array) -> jax.Array:
    """x [B, N, ...], indices int[B, K] -> x at those patches [B, K, ...]."""
    indices = indices.reshape(indices.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, indices, axis=1)


def scatter(x: jax.Array, order: jax.Array) -> jax.Array:
    """Inverse of `gather(full, order[:, :K])`: x [B, K, ...] -> [B, N, ...].

    `order` int[B, N] is a permutation per image (e.g. `visible_first`); row
    k of x goes to patch `order[:, k]`, the other N - K patches are zero.
    """
    batch, num = order.shape
    padding = jnp.zeros((batch, num - x.shape[1]) + x.shape[2:], x.dtype)
    in_order = jnp.concatenate([x, padding], axis=1)  # [B, N, ...], in `order`
    return gather(in_order, jnp.argsort(order, axis=-1))
