"""Tests of symmim_jax.losses against slow NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax.ops import losses


def _np_masked(pred, target, mask, power):
    """Sum over masked patches of sum_P |err|^power / (count * P)."""
    b, n, p = pred.shape
    total, count = 0.0, 0
    for i in range(b):
        for j in range(n):
            if mask[i, j]:
                for k in range(p):
                    err = float(pred[i, j, k]) - float(target[i, j, k])
                    total += abs(err) ** power
                count += 1
    return total / (count * p) if count else 0.0


def _np_infonce(queries, keys, mask, temperature, dictionary):
    """Mean over masked queries of -log softmax(positive), by loops."""
    q = queries.astype(np.float64)
    k = keys.astype(np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    b, n, _ = q.shape
    per_query = []
    for i in range(b):
        for j in range(n):
            if not mask[i, j]:
                continue
            images = [i] if dictionary == "image" else range(b)
            logits = {
                (ii, jj): q[i, j] @ k[ii, jj] / temperature for ii in images for jj in range(n)
            }
            values = np.array(list(logits.values()))
            lse = values.max() + np.log(np.exp(values - values.max()).sum())
            per_query.append(lse - logits[(i, j)])
    return float(np.mean(per_query)) if per_query else 0.0


def _data(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# A mask with masked and unmasked patches in both images, [2, 4].
MASK = np.array([[True, False, True, False], [False, False, True, True]])
# A single masked patch: a count of 1 must be divided by as is.
ONE_PATCH = np.zeros((2, 4), bool)
ONE_PATCH[1, 2] = True


# ---------------------------------------------------------------- pixels


@pytest.mark.parametrize("mask", [MASK, ONE_PATCH])
@pytest.mark.parametrize("fn,power", [(losses.masked_l1, 1), (losses.masked_mse, 2)])
def test_masked_pixel_losses_match_numpy(fn, power, mask):
    pred, target = _data((2, 4, 6), 0), _data((2, 4, 6), 1)
    got = fn(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask))
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _np_masked(pred, target, mask, power), rtol=1e-6)
    # bfloat16 inputs are upcast before the arithmetic.
    pred16 = jnp.asarray(pred, jnp.bfloat16)
    got16 = fn(pred16, jnp.asarray(target), jnp.asarray(mask))
    assert got16.dtype == jnp.float32
    np.testing.assert_allclose(
        got16, _np_masked(np.asarray(pred16, np.float32), target, mask, power), rtol=1e-6
    )


@pytest.mark.parametrize("fn", [losses.masked_l1, losses.masked_mse])
def test_masked_pixel_losses_gradient_only_at_masked(fn):
    pred, target = _data((2, 4, 6), 2), _data((2, 4, 6), 3)
    grad = np.asarray(jax.grad(fn)(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(MASK)))
    assert (grad[~MASK] == 0.0).all()
    assert (grad[MASK] != 0.0).all()


@pytest.mark.parametrize("fn", [losses.masked_l1, losses.masked_mse])
def test_masked_pixel_losses_empty_mask(fn):
    pred, target = jnp.asarray(_data((2, 4, 6), 4)), jnp.zeros((2, 4, 6))
    empty = jnp.zeros((2, 4), bool)
    loss, grad = jax.value_and_grad(fn)(pred, target, empty)
    assert loss == 0.0
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_masked_l1_ignores_inf_at_unmasked_patch():
    pred = _data((2, 4, 6), 5)
    pred[0, 1] = np.inf  # patch (0, 1) is not masked
    target = _data((2, 4, 6), 6)
    loss, grad = jax.value_and_grad(losses.masked_l1)(
        jnp.asarray(pred), jnp.asarray(target), jnp.asarray(MASK)
    )
    np.testing.assert_allclose(loss, _np_masked(pred, target, MASK, 1), rtol=1e-6)
    assert np.isfinite(np.asarray(grad)).all()


# ---------------------------------------------------------------- InfoNCE


@pytest.mark.parametrize("dictionary", ["image", "batch"])
def test_infonce_matches_numpy(dictionary):
    queries, keys = _data((2, 4, 3), 7), _data((2, 4, 3), 8)
    got = losses.patch_infonce(
        jnp.asarray(queries), jnp.asarray(keys), jnp.asarray(MASK), 0.1, dictionary
    )
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _np_infonce(queries, keys, MASK, 0.1, dictionary), rtol=1e-5)


def test_infonce_dictionaries_differ():
    queries, keys = _data((2, 4, 3), 9), _data((2, 4, 3), 10)
    args = (jnp.asarray(queries), jnp.asarray(keys), jnp.asarray(MASK), 0.1)
    # More negatives in the batch dictionary: a strictly larger loss.
    assert losses.patch_infonce(*args, "batch") > losses.patch_infonce(*args, "image")


def test_infonce_bfloat16_inputs():
    queries, keys = _data((2, 4, 3), 11), _data((2, 4, 3), 12)
    q16 = jnp.asarray(queries, jnp.bfloat16)
    k16 = jnp.asarray(keys, jnp.bfloat16)
    got = losses.patch_infonce(q16, k16, jnp.asarray(MASK), 0.1)
    assert got.dtype == jnp.float32
    expected = _np_infonce(
        np.asarray(q16, np.float32), np.asarray(k16, np.float32), MASK, 0.1, "image"
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_infonce_is_scale_invariant():
    queries, keys = _data((2, 4, 3), 13), _data((2, 4, 3), 14)
    mask = jnp.asarray(MASK)
    base = losses.patch_infonce(jnp.asarray(queries), jnp.asarray(keys), mask, 0.1)
    scaled = losses.patch_infonce(jnp.asarray(7.0 * queries), jnp.asarray(0.01 * keys), mask, 0.1)
    np.testing.assert_allclose(scaled, base, rtol=1e-5)


@pytest.mark.parametrize("dictionary", ["image", "batch"])
def test_infonce_gradients(dictionary):
    queries = jnp.asarray(_data((2, 4, 3), 15))
    keys = jnp.asarray(_data((2, 4, 3), 16))
    mask = jnp.asarray(MASK)
    grad_q, grad_k = jax.grad(losses.patch_infonce, argnums=(0, 1))(
        queries, keys, mask, 0.1, dictionary
    )
    grad_q, grad_k = np.asarray(grad_q), np.asarray(grad_k)
    # Keys are a stop-gradient target.
    np.testing.assert_array_equal(grad_k, 0.0)
    assert (grad_q[~MASK] == 0.0).all()
    assert (np.abs(grad_q[MASK]).sum(-1) > 0.0).all()


@pytest.mark.parametrize("dictionary", ["image", "batch"])
def test_infonce_empty_mask(dictionary):
    queries = jnp.asarray(_data((2, 4, 3), 17))
    keys = jnp.asarray(_data((2, 4, 3), 18))
    empty = jnp.zeros((2, 4), bool)
    loss, grad = jax.value_and_grad(losses.patch_infonce)(queries, keys, empty, 0.1, dictionary)
    assert loss == 0.0
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_infonce_zero_vectors_are_finite():
    queries = jnp.zeros((2, 4, 3)).at[0, 0].set(1.0)
    keys = jnp.zeros((2, 4, 3))
    loss, grad = jax.value_and_grad(losses.patch_infonce)(queries, keys, jnp.asarray(MASK), 0.1)
    # All logits are 0: uniform over the 4 keys of the image.
    np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-6)
    assert np.isfinite(np.asarray(grad)).all()


def test_infonce_perfect_alignment():
    # Every patch of the batch gets its own one-hot direction.
    onehots = jnp.eye(8).reshape(2, 4, 8)
    mask = jnp.ones((2, 4), bool)
    for dictionary in ("image", "batch"):
        loss = losses.patch_infonce(3.0 * onehots, onehots, mask, 0.01, dictionary)
        assert loss < 1e-6
    # Two identical images: for the batch dictionary the other image's copy
    # of the positive is a negative as close as the positive, so log 2.
    same = jnp.stack([jnp.eye(4), jnp.eye(4)])  # [2, 4, 4]
    assert losses.patch_infonce(same, same, mask, 0.01, "image") < 1e-6
    np.testing.assert_allclose(
        losses.patch_infonce(same, same, mask, 0.01, "batch"), np.log(2.0), rtol=1e-5
    )


def test_infonce_jit():
    queries = jnp.asarray(_data((2, 4, 3), 19))
    keys = jnp.asarray(_data((2, 4, 3), 20))
    fn = jax.jit(losses.patch_infonce, static_argnums=(3, 4))
    for dictionary in ("image", "batch"):
        np.testing.assert_allclose(
            fn(queries, keys, jnp.asarray(MASK), 0.1, dictionary),
            losses.patch_infonce(queries, keys, jnp.asarray(MASK), 0.1, dictionary),
            rtol=1e-6,
        )


@pytest.mark.parametrize(
    "kwargs", [dict(dictionary="queue"), dict(temperature=0.0), dict(mask=np.ones((2, 3), bool))]
)
def test_infonce_rejects_bad_args(kwargs):
    args = dict(
        queries=jnp.zeros((2, 4, 3)),
        keys=jnp.zeros((2, 4, 3)),
        mask=np.ones((2, 4), bool),
        temperature=0.1,
    )
    args.update(kwargs)
    with pytest.raises(ValueError):
        losses.patch_infonce(**args)
