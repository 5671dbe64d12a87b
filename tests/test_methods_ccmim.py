import jax
import jax.numpy as jnp
from methods_helpers import build, masked_mean, norm_pix, patchify, pretrain_loss
import numpy as np
import pytest
import tiny_config

from symmim_jax.methods import ccmim
from symmim_jax.models import vit


@pytest.fixture(scope="module")
def setup():
    return build("ccmim")


def test_importance_mask_has_the_ratio_and_prefers_important_patches():
    # Patches 0..7 are 9x as important as 8..15.
    importance = jnp.tile(jnp.repeat(jnp.array([0.9, 0.1]) / 8, 8), (2000, 1))
    mask = np.asarray(ccmim.importance_mask(jax.random.key(0), importance, 12))
    np.testing.assert_array_equal(mask.sum(1), 12)
    high, low = mask[:, :8].mean(), mask[:, 8:].mean()
    # Sampling 12 of 16 without replacement: every important patch is masked
    # most of the time, the unimportant ones about half of the time.
    assert high > 0.95 and 0.4 < low < 0.6
    # Uniform importance: no preference.
    uniform = np.asarray(ccmim.importance_mask(jax.random.key(1), jnp.ones((2000, 16)), 12))
    assert abs(uniform[:, :8].mean() - uniform[:, 8:].mean()) < 0.02


def test_select_samples_from_the_last_block_cls_attention(setup):
    method, params, images = setup
    key = jax.random.key(2)
    attention = vit.cls_attention(method.encoder, params["encoder"], images)
    np.testing.assert_array_equal(
        method.select(params, images, key), ccmim.importance_mask(key, attention, 12)
    )


def _cls_infonce_reference(visible, masked, tau):
    """ccMIM eq. 7 in float64: anchor visible i, positive masked i, negatives
    the other visible and the other masked [CLS]."""
    v = visible / np.linalg.norm(visible, axis=1, keepdims=True)
    m = masked / np.linalg.norm(masked, axis=1, keepdims=True)
    losses = []
    for i in range(len(v)):
        pos = np.exp(v[i] @ m[i] / tau)
        neg = sum(np.exp(v[i] @ v[j] / tau) for j in range(len(v)) if j != i)
        neg += sum(np.exp(v[i] @ m[j] / tau) for j in range(len(v)))
        losses.append(-np.log(pos / neg))
    return np.mean(losses)


def test_cls_infonce_matches_eq7_and_stops_the_teacher_gradient():
    rng = np.random.RandomState(3)
    visible, masked = rng.randn(5, 8), rng.randn(5, 8)
    got = ccmim.cls_infonce(
        jnp.asarray(visible, jnp.float32), jnp.asarray(masked, jnp.float32), 0.2
    )
    np.testing.assert_allclose(got, _cls_infonce_reference(visible, masked, 0.2), rtol=1e-5)
    g_visible, g_masked = jax.grad(ccmim.cls_infonce, argnums=(0, 1))(
        jnp.asarray(visible, jnp.float32), jnp.asarray(masked, jnp.float32), 0.2
    )
    np.testing.assert_array_equal(g_masked, 0.0)
    assert np.all(np.isfinite(g_visible)) and float(jnp.abs(g_visible).sum()) > 0


def test_loss_is_mse_plus_lambda_infonce(setup):
    method, params, images = setup
    key = jax.random.key(4)
    loss, terms = pretrain_loss(method, params, images, key)
    mask = method.select(params, images, jax.random.split(key)[0])
    pred = np.asarray(method.reconstruct(params, images, mask), np.float64)
    want_rec = masked_mean(np.square(pred - norm_pix(patchify(images))), mask)
    np.testing.assert_allclose(terms["loss_rec"], want_rec, rtol=1e-4)
    # The [CLS] of each set: the encoder on those patches only.
    order = np.argsort(np.asarray(mask), axis=1, kind="stable")
    cls = [
        method.encoder.apply({"params": params["encoder"]}, images, keep=part)[:, 0]
        for part in (order[:, :4], order[:, 4:])
    ]
    h_visible, h_masked = (np.asarray(method.project(params, c), np.float64) for c in cls)
    want_nce = _cls_infonce_reference(h_visible, h_masked, 0.2)
    np.testing.assert_allclose(terms["loss_nce"], want_nce, rtol=1e-4)
    np.testing.assert_allclose(loss, want_rec + 0.2 * want_nce, rtol=1e-4)


@pytest.mark.parametrize(
    "field, value", [("mask_ratio", 1.0), ("temperature", 0.0), ("decoder_width", 10)]
)
def test_check_config_names_the_field(field, value):
    config = tiny_config.get_config()
    config.method = "ccmim"
    config.ccmim[field] = value
    with pytest.raises(ValueError, match=f"config.ccmim.{field}"):
        ccmim.CCMIM.check_config(config)
