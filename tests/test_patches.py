"""Tests of symmim_jax.patches against slow NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax.ops import patches


def _np_patchify(images, patch):
    """[B, H, W, C] -> [B, N, P] by looping over patches and their pixels."""
    b, h, w, c = images.shape
    gh, gw = h // patch, w // patch
    out = np.zeros((b, gh * gw, patch * patch * c), images.dtype)
    for row in range(gh):
        for col in range(gw):
            n = row * gw + col
            for pr in range(patch):
                for pc in range(patch):
                    for ch in range(c):
                        k = (pr * patch + pc) * c + ch
                        out[:, n, k] = images[:, row * patch + pr, col * patch + pc, ch]
    return out


def _images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_patchify_matches_numpy_loop():
    images = _images((2, 8, 12, 3))
    got = patches.patchify(jnp.asarray(images), 4)
    assert got.shape == (2, 6, 48)
    np.testing.assert_array_equal(np.asarray(got), _np_patchify(images, 4))


def test_unpatchify_round_trip():
    images = _images((2, 8, 12, 3), seed=1)
    tokens = patches.patchify(jnp.asarray(images), 4)
    np.testing.assert_array_equal(np.asarray(patches.unpatchify(tokens, 4, (2, 3))), images)
    tokens = _images((2, 6, 48), seed=2)
    np.testing.assert_array_equal(
        np.asarray(patches.patchify(patches.unpatchify(tokens, 4, (2, 3)), 4)), tokens
    )


def test_patchify_rejects_indivisible_size():
    with pytest.raises(ValueError):
        patches.patchify(jnp.zeros((1, 8, 10, 3)), 4)


def test_pixel_targets_plain_is_float32_patchify():
    images = _images((2, 8, 8, 3), seed=3)
    got = patches.pixel_targets(jnp.asarray(images, jnp.bfloat16), 4, False)
    assert got.dtype == jnp.float32
    expected = _np_patchify(np.asarray(jnp.asarray(images, jnp.bfloat16), np.float32), 4)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_pixel_targets_norm_pix():
    # Offset and scale per patch, so a missing normalisation would show.
    images = 5.0 + 3.0 * _images((2, 8, 8, 3), seed=4)
    got = np.asarray(patches.pixel_targets(jnp.asarray(images), 4, True))
    raw = _np_patchify(images, 4).astype(np.float64)
    expected = np.zeros_like(raw)
    for b in range(raw.shape[0]):
        for n in range(raw.shape[1]):
            x = raw[b, n]
            expected[b, n] = (x - x.mean()) / np.sqrt(x.var() + 1e-6)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(got.var(-1), 1.0, atol=1e-4)


def test_pixel_targets_norm_pix_constant_patch_is_finite():
    got = patches.pixel_targets(jnp.ones((1, 4, 4, 1)), 2, True)
    np.testing.assert_array_equal(np.asarray(got), 0.0)


def test_patchify_jit():
    images = jnp.asarray(_images((2, 8, 8, 3), seed=5))
    fn = jax.jit(patches.pixel_targets, static_argnums=(1, 2))
    np.testing.assert_array_equal(fn(images, 4, False), patches.pixel_targets(images, 4, False))


def test_normalize_matches_numpy():
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 3, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = patches.normalize(images, mean, std)
    want = (images / 255.0 - np.array(mean)) / np.array(std)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
