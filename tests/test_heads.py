"""The MLP heads: the layers of each normalization, BatchNorm statistics over the
tokens a mask keeps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax.models import heads


def _shapes(tree):
    return jax.tree.map(jnp.shape, tree)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_layers_of_each_normalization(norm):
    mlp = heads.Mlp((16, 16, 8), norm=norm, norm_output=True)
    variables = mlp.init(jax.random.key(0), jnp.ones((2, 3, 4)))
    params = variables["params"]
    if norm == "none":
        assert "batch_stats" not in variables
        assert _shapes(params["fc1"]) == {"kernel": (4, 16), "bias": (16,)}
        assert set(params) == {"fc1", "fc2", "fc3"}
        return
    # MoCo v3: Linear without bias -> BN -> ReLU; the output's BN has no affine.
    assert set(params) == {"fc1", "fc2", "fc3", "bn1", "bn2"}
    assert all(set(params[f"fc{i}"]) == {"kernel"} for i in (1, 2, 3))
    assert set(variables["batch_stats"]) == {"bn1", "bn2", "bn3"}
    assert _shapes(variables["batch_stats"]["bn3"]) == {"mean": (8,), "var": (8,)}


def test_batch_statistics_count_only_the_masked_tokens():
    mlp = heads.Mlp((6, 5), norm="batch")
    x = jax.random.normal(jax.random.key(1), (3, 4, 7))  # [B, K, D]
    mask = jnp.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], bool)
    variables = mlp.init(jax.random.key(2), x)
    out, updates = mlp.apply(variables, x, mask=mask, mutable=["batch_stats"])
    kept = x[mask][None]  # [1, 5, D]: the masked tokens alone
    want, want_updates = mlp.apply(variables, kept, mutable=["batch_stats"])
    np.testing.assert_allclose(out[mask], want[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(want_updates)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The running mean moves 0.1 of the way to the kept tokens' mean.
    hidden = kept @ variables["params"]["fc1"]["kernel"]
    np.testing.assert_allclose(
        updates["batch_stats"]["bn1"]["mean"], 0.1 * hidden.mean((0, 1)), rtol=1e-5, atol=1e-6
    )
