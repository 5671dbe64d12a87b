"""SymMIM losses: masked pixel regression and per-patch InfoNCE.

All losses are computed in float32 whatever the input dtype, and are safe
(0, with finite zero gradients) when the mask selects no patch.
"""

import jax
import jax.numpy as jnp
import optax

# Clamp on the norm: keeps the normalisation and its gradient finite for
# all-zero vectors.
_NORM_EPS = 1e-6


def _masked_mean(per_patch: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``per_patch [B, N]`` over the True entries of ``mask``."""
    # where, not a product with a float mask, so an inf at an unmasked patch
    # cannot turn the sum into NaN.
    total = jnp.sum(jnp.where(mask, per_patch, 0.0))
    count = jnp.sum(mask, dtype=jnp.float32)
    # max(count, 1): an empty mask gives 0 / 1 rather than 0 / 0.
    return total / jnp.maximum(count, 1.0)


def masked_l1(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """L1 summed over the pixels of masked patches / (num masked * P).

    ``pred``, ``target``: ``[B, N, P]``; ``mask``: ``bool[B, N]``.
    """
    err = jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32))
    return _masked_mean(err.mean(axis=-1), mask)


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Squared error, weighted as ``masked_l1``."""
    err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
    return _masked_mean(err.mean(axis=-1), mask)


def _l2_normalize(x: jax.Array) -> jax.Array:
    sq_norm = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq_norm, _NORM_EPS**2))


def patch_infonce(
    queries: jax.Array,
    keys: jax.Array,
    mask: jax.Array,
    temperature: float,
    dictionary: str = "image",
    positions: jax.Array | None = None,
) -> jax.Array:
    """Per-patch InfoNCE, averaged over the queries where ``mask`` is True.

    ``queries``: ``[B, Q, C]`` online predictor outputs, at the patches
    ``positions`` (``int[B, Q]``; default all ``Q = N`` patches in order);
    ``keys``: ``[B, N, C]`` target projector outputs (stop-gradient);
    ``mask``: ``bool[B, Q]``. Both are L2-normalised. The positive of the
    query at patch ``(b, j)`` is key ``(b, j)``; the negatives are the other
    keys of image ``b`` (``dictionary="image"``) or all other ``B * N`` keys
    of the batch (``dictionary="batch"``).
    """
    if dictionary not in ("image", "batch"):
        raise ValueError(f"unknown dictionary {dictionary!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    batch, num, dim = keys.shape
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(num), (batch, num))
    if (
        queries.shape[::2] != keys.shape[::2]
        or mask.shape != queries.shape[:2]
        or (positions.shape != mask.shape)
    ):
        raise ValueError(
            f"shapes do not match: queries {queries.shape}, keys {keys.shape}, mask "
            f"{mask.shape}, positions {positions.shape}"
        )
    q = _l2_normalize(queries.astype(jnp.float32))  # [B, Q, C]
    k = _l2_normalize(jax.lax.stop_gradient(keys).astype(jnp.float32))  # [B, N, C]
    # Full-precision dot products: TPUs otherwise round float32 matmul inputs
    # to bfloat16, and the logits are then scaled up by 1 / temperature.
    precision = jax.lax.Precision.HIGHEST
    if dictionary == "image":
        # [B, Q, N]: each query against the N keys of its own image.
        logits = jnp.einsum("bjc,bic->bji", q, k, precision=precision)
        labels = positions
    else:
        # [B, Q, B * N]: each query against every key of the batch.
        all_keys = k.reshape(batch * num, dim)
        logits = jnp.einsum("bjc,mc->bjm", q, all_keys, precision=precision)
        labels = positions + num * jnp.arange(batch)[:, None]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits / temperature, labels)  # [B, Q]
    return _masked_mean(loss, mask)
