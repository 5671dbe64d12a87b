"""Random erasing: the host's box follows timm's rule (compared in distribution
with timm's RandomErasing), the device fills exactly the box with N(0, 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from symmim_jax.data import erasing

_SAMPLE = tf.function(
    lambda seed, prob: erasing.sample_box(seed, 16, 12, prob=prob), reduce_retracing=True
)


def _boxes(prob, n):
    return np.stack([_SAMPLE(tf.constant([s, 7], tf.int64), prob).numpy() for s in range(n)])


def test_boxes_fit_and_follow_the_probability():
    assert not _boxes(0.0, 20)[:, 2:].any()
    boxes = _boxes(1.0, 300)
    top, left, h, w = boxes.T
    assert (h > 0).all() and (h < 16).all() and (w > 0).all() and (w < 12).all()
    assert (top >= 0).all() and (top + h <= 16).all() and (left + w <= 12).all()
    # Uniform placement reaches both edges.
    assert (top == 0).any() and (top + h == 16).any()
    erased = (_boxes(0.25, 400)[:, 2] > 0).mean()
    assert abs(erased - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 400)


def test_box_sizes_match_timms_in_distribution():
    """Mean box height, width and area over many draws: ours vs timm's
    RandomErasing (mode 'pixel', count 1) on a 16 x 12 image, within 4 standard errors."""
    torch = pytest.importorskip("torch")
    from timm.data.random_erasing import RandomErasing

    timm_erase = RandomErasing(1.0, mode="pixel", max_count=1, device="cpu")
    theirs = []
    for _ in range(600):
        erased = timm_erase(torch.zeros(3, 16, 12)).numpy().any(axis=0)
        rows, cols = np.nonzero(erased)
        theirs.append((np.ptp(rows) + 1, np.ptp(cols) + 1))
    theirs = np.asarray(theirs, float)
    ours = _boxes(1.0, 600)[:, 2:].astype(float)
    for stat in (lambda b: b[:, 0], lambda b: b[:, 1], lambda b: b[:, 0] * b[:, 1]):
        a, b = stat(ours), stat(theirs)
        stderr = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * stderr


def test_erase_fills_exactly_the_box_with_standard_normal_noise():
    images = jnp.full((3, 40, 30, 3), 7.0)
    boxes = jnp.array([[2, 3, 30, 20], [0, 0, 0, 0], [39, 29, 1, 1]], jnp.int32)
    out = np.asarray(erasing.erase(jax.random.key(0), images, boxes))
    inside = np.zeros((3, 40, 30), bool)
    inside[0, 2:32, 3:23] = inside[2, 39, 29] = True
    np.testing.assert_array_equal(out[~inside], 7.0)
    noise = out[0, 2:32, 3:23]
    assert (noise != 7.0).all()
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1.0) < 0.1
