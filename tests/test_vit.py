import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from symmim_jax.models import vit


def test_decode_variant_sizes():
    assert vit.decode_variant("Ti/16") == vit.VitSize(192, 12, 3, 16)
    assert vit.decode_variant("S/16") == vit.VitSize(384, 12, 6, 16)
    assert vit.decode_variant("B/16") == vit.VitSize(768, 12, 12, 16)
    assert vit.decode_variant("L/16") == vit.VitSize(1024, 24, 16, 16)
    assert vit.decode_variant("B/8").patch_size == 8


@pytest.mark.parametrize("bad", ["X/16", "B", "B/", "B/0", "B/x"])
def test_decode_variant_rejects(bad):
    with pytest.raises(ValueError, match="config.model.variant"):
        vit.decode_variant(bad)


def test_sincos_matches_reference():
    grid, width = (3, 4), 16
    got = vit.sincos_pos_embed_2d(grid, width)
    quarter = width // 4
    want = np.zeros((grid[0] * grid[1], width))
    for r in range(grid[0]):
        for c in range(grid[1]):
            for i in range(quarter):
                omega = 1.0 / 10000 ** (i / quarter)
                n = r * grid[1] + c
                want[n, i] = math.sin(c * omega)
                want[n, quarter + i] = math.cos(c * omega)
                want[n, 2 * quarter + i] = math.sin(r * omega)
                want[n, 3 * quarter + i] = math.cos(r * omega)
    np.testing.assert_allclose(got, want, atol=1e-6)


def _model_and_params(**kwargs):
    model = vit.VisionTransformer(width=16, depth=2, num_heads=2, patch_size=4, **kwargs)
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    params = model.init(jax.random.key(1), images)["params"]
    return model, params, images


def test_output_shape_and_param_names():
    model, params, images = _model_and_params()
    out = model.apply({"params": params}, images)
    assert out.shape == (2, 1 + 16, 16)
    assert set(params) == {"patch_embed", "cls_token", "mask_token", "blocks_0", "blocks_1", "norm"}
    assert params["blocks_0"]["attn"]["qkv"]["kernel"].shape == (16, 3, 2, 8)
    assert params["patch_embed"]["kernel"].shape == (4, 4, 3, 16)  # HWIO


def test_masked_patch_content_is_invisible():
    model, params, images = _model_and_params()
    mask = jnp.zeros((2, 16), bool).at[:, 5].set(True)
    changed = images.at[:, 4:8, 4:8, :].add(10.0)  # patch (1, 1) = index 5
    out = model.apply({"params": params}, images, mask)
    out_changed = model.apply({"params": params}, changed, mask)
    np.testing.assert_allclose(out, out_changed, atol=1e-6)
    # Without the mask the same change is seen.
    assert not np.allclose(
        model.apply({"params": params}, images), model.apply({"params": params}, changed), atol=1e-3
    )


def test_attention_matches_reference():
    attn = vit.Attention(num_heads=2)
    x = jax.random.normal(jax.random.key(2), (1, 5, 8))
    params = attn.init(jax.random.key(3), x)["params"]
    got = attn.apply({"params": params}, x)
    xn = np.asarray(x[0], np.float64)
    qkv = np.einsum("td,dshe->tshe", xn, params["qkv"]["kernel"]) + params["qkv"]["bias"]
    heads = []
    for h in range(2):
        q, k, v = qkv[:, 0, h], qkv[:, 1, h], qkv[:, 2, h]
        logits = q @ k.T / math.sqrt(q.shape[-1])
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        heads.append(weights @ v)
    out = np.einsum("the,hed->td", np.stack(heads, 1), params["proj"]["kernel"])
    np.testing.assert_allclose(got[0], out + params["proj"]["bias"], atol=1e-5)


def test_mlp_uses_exact_gelu():
    mlp = vit.MlpBlock(hidden=6)
    x = jax.random.normal(jax.random.key(4), (3, 4)) * 3
    params = mlp.init(jax.random.key(5), x)["params"]
    h = np.asarray(x, np.float64) @ params["fc1"]["kernel"] + params["fc1"]["bias"]
    gelu = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))
    want = gelu @ params["fc2"]["kernel"] + params["fc2"]["bias"]
    np.testing.assert_allclose(mlp.apply({"params": params}, x), want, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
    model, params, images = _model_and_params(dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert model.apply({"params": params}, images).dtype == jnp.bfloat16


def test_drop_path_only_in_training():
    model, params, images = _model_and_params(drop_path=0.5)
    eval_out = model.apply({"params": params}, images)
    np.testing.assert_array_equal(eval_out, model.apply({"params": params}, images))
    train = lambda k: model.apply(
        {"params": params}, images, train=True, rngs={"drop_path": jax.random.key(k)}
    )
    assert not np.allclose(train(0), eval_out)
    np.testing.assert_array_equal(train(0), train(0))


def test_keep_encodes_the_subset_as_attention_masking_the_rest():
    """Two paths to MAE's encoder: gathering K patches, or hiding the others
    from attention, give the same visible tokens."""
    model, params, images = _model_and_params()
    keep = jnp.array([[0, 3, 5, 9, 15], [1, 2, 4, 8, 12]])
    subset = model.apply({"params": params}, images, keep=keep)
    assert subset.shape == (2, 1 + 5, 16)
    visible = (
        jnp.zeros((2, 17), bool).at[:, 0].set(True).at[jnp.arange(2)[:, None], keep + 1].set(True)
    )
    attention_mask = jnp.broadcast_to(visible[:, None, :], (2, 17, 17))
    full = model.apply({"params": params}, images, attention_mask=attention_mask)
    np.testing.assert_allclose(subset[:, 0], full[:, 0], atol=1e-5)
    np.testing.assert_allclose(
        subset[:, 1:], jnp.take_along_axis(full[:, 1:], keep[..., None], axis=1), atol=1e-5
    )


def test_attention_mask_blocks_what_it_hides():
    model, params, images = _model_and_params()
    # Tokens 1..8 (patches 0..7) see only each other; [CLS] sees only itself.
    group = jnp.arange(17) >= 9
    allowed = (group[:, None] == group[None, :]) & (jnp.arange(17)[None, :] > 0)
    allowed = jnp.broadcast_to(allowed.at[0, 0].set(True), (2, 17, 17))
    changed = images.at[:, 8:, :, :].add(5.0)  # patches 8..15
    out = model.apply({"params": params}, images, attention_mask=allowed)
    out_changed = model.apply({"params": params}, changed, attention_mask=allowed)
    np.testing.assert_allclose(out[:, :9], out_changed[:, :9], atol=1e-6)
    assert not np.allclose(out[:, 9:], out_changed[:, 9:], atol=1e-3)


def test_cls_attention_is_eq4_of_the_last_block():
    model, params, images = _model_and_params()
    got = vit.cls_attention(model, params, images)
    assert got.shape == (2, 16)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)
    # Reference: the last block's input from a model one block shorter.
    short = vit.VisionTransformer(width=16, depth=1, num_heads=2, patch_size=4)
    names = {"patch_embed", "cls_token", "mask_token", "blocks_0"}
    x = short.apply(
        {"params": {**{k: params[k] for k in names}, "norm": params["norm"]}},
        images,
        capture_intermediates=True,
        mutable="intermediates",
    )[1]
    x = np.asarray(x["intermediates"]["blocks_0"]["__call__"][0], np.float64)
    block = params["blocks_1"]
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    xn = (x - mean) / np.sqrt(var + 1e-6) * block["norm1"]["scale"] + block["norm1"]["bias"]
    qkv = (
        np.einsum("btd,dshe->btshe", xn, block["attn"]["qkv"]["kernel"])
        + block["attn"]["qkv"]["bias"]
    )
    logits = np.einsum("bhe,bthe->bht", qkv[:, 0, 0], qkv[:, 1:, 1]) / math.sqrt(8)
    logits = logits.mean(1)
    want = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(got, want / want.sum(-1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("policy", sorted(vit.REMAT_POLICIES))
def test_remat_keeps_names_values_and_gradients(policy):
    model, params, images = _model_and_params(drop_path=0.5)
    remat = model.clone(remat=policy)
    assert jax.tree.structure(remat.init(jax.random.key(1), images)["params"]) == (
        jax.tree.structure(params)
    )

    def loss(m, p):
        out = m.apply({"params": p}, images, train=True, rngs={"drop_path": jax.random.key(2)})
        return jnp.sum(out**2)

    plain, rematted = (
        jax.jit(jax.value_and_grad(lambda p, m=m: loss(m, p)))(params) for m in (model, remat)
    )
    np.testing.assert_allclose(plain[0], rematted[0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(plain[1]), jax.tree.leaves(rematted[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "requested, dtype, head_dim, platform, expected",
    [
        ("auto", "bfloat16", 64, "gpu", "cudnn"),
        ("auto", "float16", 128, "gpu", "cudnn"),
        ("auto", "float32", 64, "gpu", "xla"),  # cuDNN's fused attention is 16-bit only
        ("auto", "bfloat16", 256, "gpu", "xla"),  # head dim over 128
        ("auto", "bfloat16", 12, "gpu", "xla"),  # not a multiple of 8
        ("auto", "bfloat16", 64, "tpu", "xla"),
        ("auto", "bfloat16", 64, "cpu", "xla"),
        ("cudnn", "float32", 64, "cpu", "cudnn"),  # an explicit choice is kept
        (None, "bfloat16", 64, "gpu", None),
    ],
)
def test_attention_implementation(requested, dtype, head_dim, platform, expected):
    assert vit.attention_implementation(requested, dtype, head_dim, platform) == expected


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("dtype, tolerance", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_padding_to_an_even_length_changes_nothing(with_mask, dtype, tolerance):
    """The cuDNN path pads 197 tokens to 198 and hands over the true length; with
    XLA's kernel the padded path must give the same outputs and gradients."""
    keys = jax.random.split(jax.random.key(0), 5)
    q, k, v, weights = (jax.random.normal(key, (2, 197, 2, 8)) for key in keys[:4])
    mask = None
    if with_mask:  # MixMIM / MAE-style: every row attends itself at least
        mask = jax.random.bernoulli(keys[4], 0.6, (2, 197, 197)) | jnp.eye(197, dtype=bool)

    def loss(q, k, v, pad):
        out = vit.attend(q, k, v, mask, implementation="xla", pad_to_even=pad)
        return jnp.sum(out.astype(jnp.float32) * weights), out

    cast = lambda x: x.astype(dtype)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)
    (plain_grads, plain), (padded_grads, padded) = (
        grad(cast(q), cast(k), cast(v), pad) for pad in (False, True)
    )
    assert padded.shape == plain.shape == (2, 197, 2, 8)
    for a, b in zip((padded, *padded_grads), (plain, *plain_grads)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(a, b, atol=tolerance * np.abs(b).max())
