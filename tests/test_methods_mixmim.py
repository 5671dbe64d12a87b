import jax
import jax.numpy as jnp
from methods_helpers import build, masked_mean, norm_pix, patchify, pretrain_loss
import numpy as np
import pytest
import tiny_config

from symmim_jax.methods import mixmim


@pytest.fixture(scope="module")
def setup():
    return build("mixmim", batch=3)


def test_mask_is_half_of_the_2x2_cells(setup):
    method = setup[0]
    (mask,) = method.masks(jax.random.key(0), 64)
    grid = np.asarray(mask).reshape(64, 4, 4)
    np.testing.assert_array_equal(grid[:, 1::2, 1::2], grid[:, ::2, ::2])
    np.testing.assert_array_equal(grid.sum((1, 2)), 8)


def test_mixed_image_takes_the_partners_patches_where_masked(setup):
    method, _, images = setup
    (mask,) = method.masks(jax.random.key(1), 3)
    mixed = patchify(method.mix(images, mask))
    own, partner = patchify(images), patchify(jnp.roll(images, 1, axis=0))
    np.testing.assert_array_equal(mixed, np.where(np.asarray(mask)[..., None], partner, own))


def test_attention_mask_blocks_cross_image_attention(setup):
    """Perturbing image 0 leaves image 1's own tokens and predictions unchanged
    (image 1 is mixed with image 0), and changes what is predicted of image 0."""
    method, params, images = setup
    (mask,) = method.masks(jax.random.key(2), 3)
    changed = images.at[0].add(jax.random.normal(jax.random.key(3), images.shape[1:]))
    encode = lambda x: method.encoder.apply(
        {"params": params["encoder"]},
        method.mix(x, mask),
        attention_mask=mixmim.group_attention(mask),
    )
    before, after = encode(images)[1], encode(changed)[1]
    own = ~np.asarray(mask[1])
    np.testing.assert_allclose(after[1:][own], before[1:][own], atol=1e-5)
    np.testing.assert_allclose(after[0], before[0], atol=1e-5)  # [CLS]
    assert not np.allclose(after[1:][~own], before[1:][~own], atol=1e-3)
    (own_b, partner_b), (own_a, partner_a) = (
        method.dual_predictions(params, x, mask, train=False) for x in (images, changed)
    )
    np.testing.assert_allclose(own_a[1], own_b[1], atol=1e-5)
    assert not np.allclose(partner_a[1], partner_b[1], atol=1e-3)


def test_loss_is_dual_mse_to_normalized_pixels(setup):
    method, params, images = setup
    key = jax.random.key(4)
    loss, terms = pretrain_loss(method, params, images, key)
    (mask,) = method.masks(jax.random.split(key)[0], 3)
    own, partner = (
        np.asarray(p, np.float64)
        for p in method.dual_predictions(params, images, mask, train=False)
    )
    target = norm_pix(patchify(images))
    mask = np.asarray(mask)
    want_own = masked_mean(np.square(own - target), mask)
    want_partner = masked_mean(np.square(partner - np.roll(target, 1, axis=0)), ~mask)
    np.testing.assert_allclose(terms["loss_rec_own"], want_own, rtol=1e-4)
    np.testing.assert_allclose(terms["loss_rec_partner"], want_partner, rtol=1e-4)
    # Ratio 0.5 with whole cells: both halves have as many patches.
    np.testing.assert_allclose(loss, (want_own + want_partner) / 2, rtol=1e-4)


@pytest.mark.parametrize(
    "field, value", [("mask_cell_size", 6), ("mask_ratio", 0.0), ("decoder_depth", 0)]
)
def test_check_config_names_the_field(field, value):
    config = tiny_config.get_config()
    config.method = "mixmim"
    config.mixmim[field] = value
    with pytest.raises(ValueError, match=f"config.mixmim.{field}"):
        mixmim.MixMIM.check_config(config)
