"""Baselines whose loss mixes images of the batch, on sharded batches.

(bfloat16 compute of every method: tests/test_configs.py runs the presets.)
"""

import jax
from methods_helpers import pretrain_loss
import numpy as np
import pytest
import tiny_config

from symmim_jax import methods
from symmim_jax.train import sharding


def _method(name):
    config = tiny_config.get_config()
    config.method = name
    return methods.build(config, total_steps=10)


@pytest.mark.parametrize("name", ["ccmim", "mixmim"])
def test_sharded_loss_and_gradients_equal_single_device(name):
    """Batch-wide pieces (MixMIM's partners, ccMIM's InfoNCE negatives) cross
    device boundaries: the result must not depend on the device count."""
    method = _method(name)
    images = np.asarray(jax.random.normal(jax.random.key(3), (8, 16, 16, 3)))
    params, _, _ = method.init(jax.random.key(4), images)

    def value_and_grad(devices):
        mesh = sharding.make_mesh(None, devices)
        batch = jax.device_put(images, sharding.batch_sharding(mesh))
        loss = lambda p, x: pretrain_loss(method, p, x, jax.random.key(5))[0]
        return jax.device_get(jax.jit(jax.value_and_grad(loss))(params, batch))

    (loss1, grads1), (loss8, grads8) = (
        value_and_grad(d) for d in (jax.devices()[:1], jax.devices())
    )
    np.testing.assert_allclose(loss1, loss8, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads1), jax.tree.leaves(grads8)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
