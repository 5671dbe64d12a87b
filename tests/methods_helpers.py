"""Shared set-up and NumPy references for the baseline method tests."""

import jax
import numpy as np
import tiny_config

from symmim_jax import methods


def build(name, batch=4, **overrides):
    """-> (method, params, images [batch, 16, 16, 3]) on the tiny config."""
    config = tiny_config.get_config()
    config.method = name
    config[name].update(overrides)
    method = methods.build(config, total_steps=10)
    images = jax.random.normal(jax.random.key(0), (batch, 16, 16, 3))
    params, target, state = method.init(jax.random.key(1), images)
    assert target == {} and state == {}
    return method, params, images


def pretrain_loss(method, params, images, key, target_params=None, method_state=None):
    """-> (loss, metrics) of `method` on normalized images, as the step calls it."""
    out = method.loss(
        params,
        {"image": images},
        key,
        target_params=target_params or {},
        method_state=method_state or {},
    )
    return out.loss, out.metrics


def patchify(images, p=4):
    """[B, H, W, C] -> [B, N, p*p*C], row-major patches, (row, col, C) inside."""
    b, h, w, c = images.shape
    x = np.asarray(images, np.float64).reshape(b, h // p, p, w // p, p, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // p) * (w // p), p * p * c)


def norm_pix(target):
    mean, var = target.mean(-1, keepdims=True), target.var(-1, keepdims=True)
    return (target - mean) / np.sqrt(var + 1e-6)


def masked_mean(err, mask):
    """err [B, N, P] -> mean over the masked patches of the per-patch mean."""
    per_patch = np.asarray(err, np.float64).mean(-1)
    return per_patch[np.asarray(mask)].mean()
