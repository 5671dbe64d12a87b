import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from symmim_jax.models import decoder


@pytest.fixture(scope="module")
def setup():
    dec = decoder.Decoder(width=16, depth=2, num_heads=2, patch_size=4)
    x = jax.random.normal(jax.random.key(0), (2, 1 + 16, 8))
    mask = jnp.zeros((2, 16), bool).at[:, :10].set(True)
    params = dec.init(jax.random.key(1), x, mask, (4, 4))["params"]
    return dec, params, x, mask


def test_shape_and_parameter_names(setup):
    dec, params, x, mask = setup
    assert dec.apply({"params": params}, x, mask, (4, 4)).shape == (2, 16, 4 * 4 * 3)
    assert set(params) == {"embed", "mask_token", "blocks_0", "blocks_1", "norm", "pred"}


def test_masked_rows_are_ignored_and_visible_rows_are_used(setup):
    dec, params, x, mask = setup
    out = dec.apply({"params": params}, x, mask, (4, 4))
    noise = jax.random.normal(jax.random.key(2), x.shape)
    hidden = jnp.pad(mask, ((0, 0), (1, 0)))[..., None]  # [B, 1 + N, 1]
    np.testing.assert_allclose(
        dec.apply({"params": params}, jnp.where(hidden, x + noise, x), mask, (4, 4)), out, atol=1e-6
    )
    assert not np.allclose(
        dec.apply({"params": params}, jnp.where(hidden, x, x + noise), mask, (4, 4)), out, atol=1e-3
    )


@pytest.mark.parametrize(
    "width, depth, heads, field",
    [(18, 1, 2, "decoder_width"), (16, 1, 3, "decoder_width"), (16, 0, 2, "decoder_depth")],
)
def test_check_config_names_the_field(width, depth, heads, field):
    section = ml_collections.ConfigDict(
        dict(decoder_width=width, decoder_depth=depth, decoder_heads=heads)
    )
    with pytest.raises(ValueError, match=f"config.mae.{field}"):
        decoder.check_config(section, "mae")
