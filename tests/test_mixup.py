import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax.data import mixup


def _batch(batch=6, size=8):
    # Image b is the constant b, so every pixel tells which image it came from.
    images = jnp.broadcast_to(
        jnp.arange(batch, dtype=jnp.float32)[:, None, None, None], (batch, size, size, 3)
    )
    return images, jnp.arange(batch) % 4


@pytest.mark.parametrize("mixup_alpha,cutmix_alpha", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_targets_sum_to_one_and_match_the_pixels(mixup_alpha, cutmix_alpha):
    images, labels = _batch()
    mix = jax.jit(
        functools.partial(
            mixup.mix,
            num_classes=4,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=1.0,
            switch_prob=0.5,
            smoothing=0.1,
        )
    )
    for seed in range(8):
        mixed, targets = mix(jax.random.key(seed), images, labels)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
        # Image 0 is mixed with image 5: lambda is the weight of its own label.
        smooth = mixup.smooth_one_hot(labels, 4, 0.1)
        lam = float((targets[0] - smooth[5])[labels[0]] / (smooth[0] - smooth[5])[labels[0]])
        if cutmix_alpha and not mixup_alpha:
            own = float(jnp.mean(mixed[0] == 0.0))  # share of pixels kept
            np.testing.assert_allclose(own, lam, atol=1e-6)
        elif mixup_alpha and not cutmix_alpha:
            np.testing.assert_allclose(mixed[0], (1 - lam) * 5.0, atol=1e-5)


def test_prob_zero_leaves_the_batch_and_smooths_labels():
    images, labels = _batch()
    mixed, targets = mixup.mix(
        jax.random.key(0),
        images,
        labels,
        4,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        prob=0.0,
        switch_prob=0.5,
        smoothing=0.1,
    )
    np.testing.assert_array_equal(mixed, images)
    expected = np.full((6, 4), 0.1 / 4)
    expected[np.arange(6), np.asarray(labels)] += 0.9
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
