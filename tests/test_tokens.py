import jax
import jax.numpy as jnp
import numpy as np

from symmim_jax.ops import masking, tokens
from symmim_jax.train import sharding


def _mask(batch=8, grid=(4, 4), ratio=0.75):
    return masking.random_mask(jax.random.key(0), batch, grid, 1, ratio)


def test_visible_first_orders_visible_then_masked_increasing():
    mask = np.asarray(_mask())
    order = np.asarray(tokens.visible_first(mask))
    for row, perm in zip(mask, order):
        np.testing.assert_array_equal(
            perm, np.concatenate([np.flatnonzero(~row), np.flatnonzero(row)])
        )


def test_gather_matches_numpy_indexing():
    x = np.random.RandomState(1).randn(8, 16, 5).astype(np.float32)
    order = np.asarray(tokens.visible_first(_mask()))[:, :4]
    want = np.stack([x[b, order[b]] for b in range(8)])
    np.testing.assert_array_equal(tokens.gather(x, order), want)


def test_scatter_undoes_gather_and_zeroes_the_rest():
    mask = _mask()
    x = jax.random.normal(jax.random.key(2), (8, 16, 5))
    order = tokens.visible_first(mask)
    back = tokens.scatter(tokens.gather(x, order[:, :4]), order)
    np.testing.assert_array_equal(back, jnp.where(mask[..., None], 0.0, x))


def test_round_trip_jits_and_shards_over_the_batch():
    mesh = sharding.make_mesh()
    mask = jax.device_put(_mask(), sharding.batch_sharding(mesh))
    x = jax.device_put(
        jax.random.normal(jax.random.key(3), (8, 16, 5)), sharding.batch_sharding(mesh)
    )

    @jax.jit
    def round_trip(x, mask):
        order = tokens.visible_first(mask)
        return tokens.scatter(tokens.gather(x, order[:, :4]), order)

    out = round_trip(x, mask)
    assert out.sharding.is_equivalent_to(x.sharding, 3)
    # Each device works on its own images: no communication in the program.
    hlo = round_trip.lower(x, mask).compile().as_text()
    for collective in ("all-gather", "all-to-all", "collective-permute", "all-reduce"):
        assert collective not in hlo
    np.testing.assert_array_equal(out, jnp.where(mask[..., None], 0.0, x))
