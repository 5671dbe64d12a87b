"""Frozen-encoder features: a chosen block's tokens, deterministic extraction."""

from fake_pretraining import encoder_params, vit_config
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax.evaluation import features
from symmim_jax.models import vit
from symmim_jax.train import sharding


@pytest.fixture(scope="module")
def encoder_and_params():
    return vit.build_encoder(vit_config("mu/4")), encoder_params("mu/4", 16, seed=1)


def _batches(images, labels, batch):
    for i in range(0, len(images), batch):
        n = len(images[i : i + batch])
        pad = batch - n
        yield {
            "image": np.pad(images[i : i + batch], ((0, pad), (0, 0), (0, 0), (0, 0))),
            "label": np.pad(labels[i : i + batch], (0, pad)),
            "valid": np.pad(np.ones(n, np.int32), (0, pad)),
        }


def test_block_features_match_the_full_encoder(encoder_and_params):
    """The truncated encoder's block-1 tokens are the full encoder's
    intermediate output; the last block's pass the final norm."""
    encoder, params = encoder_and_params
    images = jax.random.normal(jax.random.key(0), (3, 16, 16, 3))
    _, state = encoder.apply({"params": params}, images, capture_intermediates=True)
    block1 = state["intermediates"]["blocks_0"]["__call__"][0]  # [B, 1 + N, D]
    extract, _ = features.make_extractor(encoder, block=1, pool="mean")
    np.testing.assert_allclose(extract(params, images), block1[:, 1:].mean(1), rtol=1e-5, atol=1e-6)
    extract_last, trim = features.make_extractor(encoder, pool="cls")
    np.testing.assert_allclose(
        extract_last(trim(params), images),
        encoder.apply({"params": params}, images)[:, 0],
        rtol=1e-5,
        atol=1e-6,
    )
    assert "blocks_1" not in features.truncated(encoder, 1)[1](params)


def test_extraction_is_deterministic_and_drops_padding(encoder_and_params):
    encoder, params = encoder_and_params
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (13, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 13)
    extract, trim = features.make_extractor(encoder, pool="cls", mean=(0.5,) * 3, std=(0.25,) * 3)
    mesh = sharding.make_mesh()
    first = features.extract_all(extract, trim(params), _batches(images, labels, 8), mesh)
    second = features.extract_all(extract, trim(params), _batches(images, labels, 8), mesh)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], labels)
    assert first[0].shape == (13, 32)
    # One batch of all 13 (unsharded) gives the same features.
    direct = extract(trim(params), jnp.asarray(images))
    np.testing.assert_allclose(first[0], direct, rtol=1e-4, atol=1e-5)
