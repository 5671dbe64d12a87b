import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from symmim_jax import optim
from symmim_jax.models import vit


def _optim_config(**overrides):
    config = ml_collections.ConfigDict(dict(
        base_lr=8e-4, base_batch_size=2048, b1=0.9, b2=0.999, weight_decay=0.05,
        min_lr=0.0, grad_clip_norm=5.0))
    config.update(overrides)
    return config


def test_weight_decay_mask_on_vit_params():
    model = vit.VisionTransformer(width=8, depth=1, num_heads=2, patch_size=4)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    mask = optim.weight_decay_mask(params)
    assert mask["patch_embed"]["kernel"] and not mask["patch_embed"]["bias"]
    assert mask["blocks_0"]["attn"]["qkv"]["kernel"]
    assert mask["blocks_0"]["mlp"]["fc1"]["kernel"]
    assert not mask["blocks_0"]["norm1"]["scale"] and not mask["norm"]["bias"]
    assert not mask["cls_token"] and not mask["mask_token"]


def test_lr_scales_with_batch_and_follows_warmup_cosine():
    _, schedule = optim.make_optimizer(_optim_config(), batch_size=512, total_steps=100,
                                       warmup_steps=10)
    peak = 8e-4 * 512 / 2048
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(peak / 2)
    assert float(schedule(10)) == pytest.approx(peak)
    assert float(schedule(55)) == pytest.approx(peak / 2, rel=1e-4)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)


def test_weight_decay_applies_only_where_masked():
    tx, _ = optim.make_optimizer(_optim_config(weight_decay=0.5, base_lr=1.0,
                                               base_batch_size=1), 1, 10, 0)
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    lr = 1.0  # warm-up 0: step 0 is at the peak
    np.testing.assert_allclose(updates["dense"]["kernel"], -lr * 0.5 * np.ones((2, 2)))
    np.testing.assert_allclose(updates["dense"]["bias"], 0.0)


def test_gradients_are_clipped_before_adam():
    tx, _ = optim.make_optimizer(_optim_config(grad_clip_norm=5.0), 2048, 10, 1)
    params = {"w": jnp.zeros((4,))}
    grads = {"w": jnp.array([30.0, 40.0, 0.0, 0.0])}  # norm 50
    _, state = tx.update(grads, tx.init(params), params)
    adam_state = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(
        x, optax.ScaleByAdamState)) if isinstance(s, optax.ScaleByAdamState)][0]
    np.testing.assert_allclose(adam_state.mu["w"], 0.1 * np.array([3.0, 4.0, 0, 0]),
                               rtol=1e-6)
