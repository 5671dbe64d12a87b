import jax
from methods_helpers import build, masked_mean, patchify, pretrain_loss
import numpy as np
import pytest
import tiny_config

from symmim_jax.methods import simmim


def test_mask_is_random_2x2_cells_at_ratio_0_6():
    method, _, _ = build("simmim")
    (mask,) = method.masks(jax.random.key(0), 256)
    grid = np.asarray(mask).reshape(256, 4, 4)
    # 8 px cells are 2 x 2 patches: each cell constant, round(0.6 * 4) = 2 of 4 cells.
    cells = grid[:, ::2, ::2]
    for dr, dc in ((0, 1), (1, 0), (1, 1)):
        np.testing.assert_array_equal(grid[:, dr::2, dc::2], cells)
    np.testing.assert_array_equal(cells.sum((1, 2)), 2)
    # Random: every cell is masked sometimes, about 1/2 of the time.
    assert cells.mean((0,)).min() > 0.4 and cells.mean((0,)).max() < 0.6


def test_loss_is_l1_of_the_linear_head_on_masked_patches():
    method, params, images = build("simmim")
    key = jax.random.key(3)
    loss, terms = pretrain_loss(method, params, images, key)
    (mask,) = method.masks(jax.random.split(key)[0], 4)
    pred = method.reconstruct(params, images, mask)  # drop path is 0 in the demo
    want = masked_mean(np.abs(np.asarray(pred, np.float64) - patchify(images)), mask)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert float(terms["loss_rec"]) == float(loss)


def test_masked_pixels_do_not_reach_the_prediction():
    method, params, images = build("simmim")
    (mask,) = method.masks(jax.random.key(4), 4)
    hidden = np.repeat(np.repeat(np.asarray(mask).reshape(4, 4, 4), 4, 1), 4, 2)
    changed = np.where(hidden[..., None], np.asarray(images) + 3.0, images)
    np.testing.assert_allclose(
        method.reconstruct(params, changed, mask),
        method.reconstruct(params, images, mask),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "field, value", [("mask_cell_size", 6), ("mask_ratio", 0.1), ("mask_ratio", 1.0)]
)
def test_check_config_names_the_field(field, value):
    config = tiny_config.get_config()
    config.method = "simmim"
    config.simmim[field] = value
    with pytest.raises(ValueError, match=f"config.simmim.{field}"):
        simmim.SimMIM.check_config(config)
