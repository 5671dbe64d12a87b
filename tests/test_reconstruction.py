"""Reconstruction pictures: visible pixels pasted back, norm_pix undone, masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax.figures import reconstruction
from symmim_jax.ops import patches

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # uint8 x <-> x / 127.5 - 1
GAP = 2  # white pixels between the images of reconstruction_grid


class FakeMethod:
    """4 x 4 images of 2 x 2 patches; predicts a constant or the target itself."""

    patch, grid = 2, (2, 2)

    def __init__(self, prediction, mask=None, norm_pix_target=False):
        self.prediction = prediction  # "target", "norm_target" or a constant
        self.mask = mask
        self.norm_pix_target = norm_pix_target

    def masks(self, key, batch_size):
        return (jnp.asarray(self.mask), None)

    def reconstruct(self, params, images, mask):
        if self.prediction == "target":
            return patches.patchify(images, self.patch)
        if self.prediction == "norm_target":
            return patches.pixel_targets(images, self.patch, norm_pix=True)
        return jnp.full(mask.shape + (12,), self.prediction, jnp.float32)


def _images(batch=2, size=4):
    return np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8)


def _columns(grid, batch, size=4):
    """reconstruction_grid's image -> (original, masked input, reconstruction)."""
    step = size + GAP
    return [
        np.stack(
            [grid[r * step : r * step + size, c * step : c * step + size] for r in range(batch)]
        )
        for c in range(3)
    ]


def test_reconstruction_grid_pastes_visible_pixels_back():
    images = _images()
    mask = np.array([[True, False, False, True], [False, False, False, True]])
    grid = reconstruction.reconstruction_grid(
        FakeMethod(0.5, mask), None, images, jax.random.key(0), MEAN, STD
    )
    assert grid.shape == (2 * 4 + GAP, 3 * 4 + 2 * GAP, 3) and grid.dtype == np.uint8
    assert (grid[4 : 4 + GAP] == 255).all() and (grid[:, 4 : 4 + GAP] == 255).all()
    original, masked, reconstructed = _columns(grid, 2)
    hidden = np.kron(mask.reshape(2, 2, 2), np.ones((2, 2), bool))[..., None]
    hidden = np.broadcast_to(hidden, images.shape)
    np.testing.assert_array_equal(original, images)
    np.testing.assert_array_equal(masked[~hidden], images[~hidden])
    np.testing.assert_array_equal(reconstructed[~hidden], images[~hidden])
    assert (masked[hidden] == reconstruction.GRAY).all()
    # A prediction of 0.5 in normalized units is (0.5 * 0.5 + 0.5) * 255 = 191.25.
    assert (reconstructed[hidden] == 191).all()


@pytest.mark.parametrize("prediction, norm_pix", [("target", False), ("norm_target", True)])
def test_a_perfect_prediction_gives_back_the_image(prediction, norm_pix):
    images = _images()
    mask = np.ones((2, 4), bool)
    _, reconstructed = reconstruction.masked_and_reconstructed(
        FakeMethod(prediction, norm_pix_target=norm_pix),
        None,
        images,
        mask,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    )
    np.testing.assert_array_equal(reconstructed, images)


def test_norm_pix_prediction_zero_shows_each_patch_mean():
    images = _images(batch=1)
    _, reconstructed = reconstruction.masked_and_reconstructed(
        FakeMethod(0.0, norm_pix_target=True), None, images, np.ones((1, 4), bool), MEAN, STD
    )
    # With mean = std = 0.5 the un-normalized 0 is each patch's mean uint8 value.
    patch_means = patches.patchify(images.astype(np.float64), 2).mean(-1)  # [1, 4]
    expected = np.round(np.asarray(patch_means)).reshape(2, 2)
    expected = expected.repeat(2, axis=0).repeat(2, axis=1)[..., None].repeat(3, axis=-1)
    np.testing.assert_array_equal(reconstructed[0], expected)
