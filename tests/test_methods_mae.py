import jax
import jax.numpy as jnp
from methods_helpers import build, masked_mean, norm_pix, patchify, pretrain_loss
import numpy as np
import pytest
import tiny_config

from symmim_jax.methods import mae


@pytest.fixture(scope="module")
def setup():
    return build("mae")


def test_mask_hides_exactly_75_percent_of_random_patches(setup):
    method = setup[0]
    (mask,) = method.masks(jax.random.key(0), 512)
    np.testing.assert_array_equal(np.asarray(mask).sum(1), 12)
    freq = np.asarray(mask).mean(0)
    assert freq.min() > 0.68 and freq.max() < 0.82


def test_loss_is_mse_to_normalized_pixels_and_matches_the_attention_path(setup):
    """The training path (gather the visible tokens) and `reconstruct` (hide
    the masked ones from attention) are two routes to the same predictions."""
    method, params, images = setup
    key = jax.random.key(3)
    loss, _ = pretrain_loss(method, params, images, key)
    (mask,) = method.masks(jax.random.split(key)[0], 4)
    pred = np.asarray(method.reconstruct(params, images, mask), np.float64)
    want = masked_mean(np.square(pred - norm_pix(patchify(images))), mask)
    np.testing.assert_allclose(loss, want, rtol=1e-4)


def test_masked_patches_reach_neither_encoder_nor_prediction(setup):
    method, params, images = setup
    (mask,) = method.masks(jax.random.key(4), 4)
    hidden = np.repeat(np.repeat(np.asarray(mask).reshape(4, 4, 4), 4, 1), 4, 2)
    changed = jnp.where(hidden[..., None], images + 3.0, images)
    drop_key = jax.random.key(5)
    np.testing.assert_allclose(
        method.encode_visible(params, changed, mask, drop_key),
        method.encode_visible(params, images, mask, drop_key),
        atol=1e-5,
    )
    # The encoder's mask token is unused: its gradient is exactly zero.
    grads = jax.jit(jax.grad(lambda p: pretrain_loss(method, p, images, jax.random.key(6))[0]))(
        params
    )
    np.testing.assert_array_equal(grads["encoder"]["mask_token"], 0.0)
    assert float(jnp.abs(grads["decoder"]["mask_token"]).sum()) > 0


@pytest.mark.parametrize(
    "field, value", [("mask_ratio", 0.0), ("mask_ratio", 0.99), ("decoder_heads", 3)]
)
def test_check_config_names_the_field(field, value):
    config = tiny_config.get_config()
    config.method = "mae"
    config.mae[field] = value
    with pytest.raises(ValueError, match=f"config.mae.{field}|config.mae.decoder_width"):
        mae.MAE.check_config(config)
