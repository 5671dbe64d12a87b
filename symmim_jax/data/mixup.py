"""Mixup and CutMix on the device, with smoothed one-hot targets (timm's Mixup,
mode 'batch': one lambda per batch, each image mixed with the reversed batch).

Drawn from the step's key, so a resumed run mixes exactly as the original.
"""

import jax
import jax.numpy as jnp


def smooth_one_hot(labels, num_classes: int, smoothing: float):
    """int [B] -> [B, C]: 1 - smoothing + smoothing / C on the label, smoothing / C elsewhere."""
    off = smoothing / num_classes
    return jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing) + off


def cutmix_box(key, lam, height: int, width: int):
    """bool [H, W]: the box pasted from the other image, area about (1 - lam) H W,
    centred uniformly and clipped at the border (timm rand_bbox)."""
    ratio = jnp.sqrt(1.0 - lam)
    cut_h, cut_w = (height * ratio).astype(jnp.int32), (width * ratio).astype(jnp.int32)
    key_y, key_x = jax.random.split(key)
    cy = jax.random.randint(key_y, (), 0, height)
    cx = jax.random.randint(key_x, (), 0, width)
    rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    return (
        (rows >= jnp.clip(cy - cut_h // 2, 0, height))
        & (rows < jnp.clip(cy + cut_h // 2, 0, height))
        & (cols >= jnp.clip(cx - cut_w // 2, 0, width))
        & (cols < jnp.clip(cx + cut_w // 2, 0, width))
    )


def mix(
    key,
    images,
    labels,
    num_classes: int,
    *,
    mixup_alpha: float,
    cutmix_alpha: float,
    prob: float,
    switch_prob: float,
    smoothing: float,
):
    """images [B, H, W, C], labels int [B] -> (mixed images, targets [B, C]).

    With probability `prob` the batch is mixed: by CutMix with probability
    `switch_prob` when both are on, else by Mixup; lambda ~ Beta(alpha, alpha),
    and for CutMix lambda is the share of pixels actually kept.
    """
    targets = smooth_one_hot(labels, num_classes, smoothing)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets
    key_apply, key_switch, key_mixup, key_cutmix, key_box = jax.random.split(key, 5)
    other = images[::-1]
    candidates = []  # (lambda, images)
    if mixup_alpha > 0:
        lam = jax.random.beta(key_mixup, mixup_alpha, mixup_alpha)
        candidates.append((lam, lam * images + (1.0 - lam) * other))
    if cutmix_alpha > 0:
        box = cutmix_box(
            key_box,
            jax.random.beta(key_cutmix, cutmix_alpha, cutmix_alpha),
            images.shape[1],
            images.shape[2],
        )
        lam = 1.0 - box.mean()
        candidates.append((lam, jnp.where(box[None, :, :, None], other, images)))
    lam, mixed = candidates[0]
    if len(candidates) == 2:
        use_cutmix = jax.random.bernoulli(key_switch, switch_prob)
        lam = jnp.where(use_cutmix, candidates[1][0], lam)
        mixed = jnp.where(use_cutmix, candidates[1][1], mixed)
    apply = jax.random.bernoulli(key_apply, prob)
    lam = jnp.where(apply, lam, 1.0)
    mixed = jnp.where(apply, mixed, images)
    return mixed, lam * targets + (1.0 - lam) * targets[::-1]
