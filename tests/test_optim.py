import importlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from symmim_jax.models import vit
from symmim_jax.train import optim


def _optim_config(**overrides):
    config = ml_collections.ConfigDict(
        dict(
            base_lr=8e-4,
            base_batch_size=2048,
            b1=0.9,
            b2=0.999,
            weight_decay=0.05,
            min_lr=0.0,
            grad_clip_norm=5.0,
        )
    )
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


PRESETS = [
    ("pretrain", name, arg)
    for name, args in (
        ("symmim", ("S/16", "B/16", "L/16")),
        ("simmim", ("B/16",)),
        ("mae", ("B/16",)),
        ("ccmim", ("B/16",)),
        ("mixmim", ("B/16",)),
        ("demo", (None,)),
    )
    for arg in args
]
PRESETS += [("finetune", "finetune", arg) for arg in ("S/16", "B/16", "L/16")]
PRESETS += [("finetune", "demo_finetune", None), ("probe", "linear_probe", "B/16")]
PRESETS += [("probe", "demo_linear_probe", None)]
# The names a parameter may have; one not listed fails the test below rather
# than falling silently on either side of the mask.
WEIGHTS = {"kernel", "embedding"}
NOT_DECAYED = {"bias", "scale", "cls_token", "mask_token", "pos_embed"}


def _preset_params(kind, name, arg):
    """The trainable parameters of a preset's task, as shapes (one eval_shape)."""
    from symmim_jax import finetune, linear_probe, pretrain
    from symmim_jax.train import run

    module = importlib.import_module(f"symmim_jax.configs.{name}")
    config = module.get_config() if arg is None else module.get_config(arg)
    task_class = {
        "pretrain": pretrain.Pretraining,
        "finetune": finetune.FineTuning,
        "probe": linear_probe.LinearProbing,
    }[kind]
    task = task_class(config)
    task.check_config()
    objective, _, _ = task.build(run.RunLength(10, 100, 10), run.DataFacts(1000, 10))
    size = config.input.image_size
    images = jnp.zeros((1, size, size, 3))
    return jax.eval_shape(objective.init, jax.random.key(0), images)[0]


@pytest.mark.parametrize("kind, name, arg", PRESETS)
def test_only_weights_decay_in_every_preset(kind, name, arg):
    """No bias, norm, token or position embedding decays, whatever its rank."""
    params = _preset_params(kind, name, arg)
    mask = optim.weight_decay_mask(params)
    kept_ranks = set()
    for (path, leaf), decays in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(mask), strict=True
    ):
        leaf_name = str(path[-1].key)
        where = jax.tree_util.keystr(path)
        assert leaf_name in WEIGHTS | NOT_DECAYED, f"{where}: unknown parameter name"
        assert decays == (leaf_name in WEIGHTS), where
        assert not decays or leaf.ndim >= 2, where
        if not decays:
            kept_ranks.add(leaf.ndim)
    assert any(jax.tree.leaves(mask))
    if kind != "probe":  # a ViT: the qkv bias is [3, heads, head_dim] and not decayed
        assert 3 in kept_ranks


def test_lars_decays_and_scales_only_the_weights():
    tx, _ = optim.make_lars(
        ml_collections.ConfigDict(
            dict(base_lr=1.0, base_batch_size=1, weight_decay=0.5, min_lr=0.0, momentum=0.0)
        ),
        batch_size=1,
        total_steps=10,
        warmup_steps=0,
    )
    params = {"head": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2, 2))}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert float(jnp.abs(updates["head"]["kernel"]).min()) > 0
    np.testing.assert_allclose(updates["head"]["bias"], 0.0)


def test_lr_scales_with_batch_and_follows_warmup_cosine():
    _, schedule = optim.make_adamw(
        _optim_config(), batch_size=512, total_steps=100, warmup_steps=10
    )
    peak = 8e-4 * 512 / 2048
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(peak / 2)
    assert float(schedule(10)) == pytest.approx(peak)
    assert float(schedule(55)) == pytest.approx(peak / 2, rel=1e-4)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)


def test_weight_decay_applies_only_where_masked():
    tx, _ = optim.make_adamw(
        _optim_config(weight_decay=0.5, base_lr=1.0, base_batch_size=1), 1, 10, 0
    )
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((3, 2, 2))}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    lr = 1.0  # warm-up 0: step 0 is at the peak
    np.testing.assert_allclose(updates["dense"]["kernel"], -lr * 0.5 * np.ones((2, 2)))
    np.testing.assert_allclose(updates["dense"]["bias"], 0.0)


def test_gradients_are_clipped_before_adam():
    tx, _ = optim.make_adamw(_optim_config(grad_clip_norm=5.0), 2048, 10, 1)
    params = {"w": jnp.zeros((4,))}
    grads = {"w": jnp.array([30.0, 40.0, 0.0, 0.0])}  # norm 50
    _, state = tx.update(grads, tx.init(params), params)
    adam_state = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)
    ][0]
    np.testing.assert_allclose(adam_state.mu["w"], 0.1 * np.array([3.0, 4.0, 0, 0]), rtol=1e-6)


def _classifier_params(depth=3):
    from symmim_jax.models import classifier

    encoder = vit.VisionTransformer(
        width=8, depth=depth, num_heads=2, patch_size=4, final_norm=False
    )
    return classifier.Classifier(encoder, 5).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))[
        "params"
    ]


def _expected_scales(params, depth, decay):
    """decay ** (depth + 1 - layer) by name: embeddings and tokens at layer 0,
    block i at i + 1, fc_norm and head at depth + 1 (BEiT)."""

    def scale(path, _):
        parts = [str(k.key) for k in path]
        if parts[1] in ("patch_embed", "cls_token", "mask_token"):
            layer = 0
        elif parts[1].startswith("blocks_"):
            layer = int(parts[1].split("_")[1]) + 1
        else:
            assert parts[0] in ("fc_norm", "head")
            layer = depth + 1
        return decay ** (depth + 1 - layer)

    return jax.tree_util.tree_map_with_path(scale, params)


def test_layer_decay_scales_follow_the_formula():
    depth, decay = 3, 0.65
    params = _classifier_params(depth)
    tx = optim.layer_decay(depth, decay)
    ones = jax.tree.map(jnp.ones_like, params)
    scaled, _ = tx.update(ones, tx.init(params), params)
    for got, want in zip(
        jax.tree.leaves(scaled), jax.tree.leaves(_expected_scales(params, depth, decay))
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert float(scaled["encoder"]["patch_embed"]["kernel"].max()) == pytest.approx(decay**4)
    assert float(scaled["encoder"]["blocks_2"]["mlp"]["fc2"]["bias"].max()) == pytest.approx(decay)
    assert float(scaled["head"]["kernel"].max()) == 1.0


def test_layer_decay_scales_each_update_of_adamw():
    """Two paths agree: the layer-decayed update is AdamW's times the scale."""
    params = _classifier_params()
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
    config = _optim_config(layer_decay=0.5, grad_clip_norm=0.0)
    decayed, _ = optim.make_finetune_adamw(config, 2048, 10, 2, depth=3)
    plain, _ = optim.make_adamw(config, 2048, 10, 2)
    # The second step: at the first the warm-up lr is 0.
    step = lambda tx: tx.update(grads, tx.update(grads, tx.init(params), params)[1], params)[0]
    up_decayed, up_plain = step(decayed), step(plain)
    for a, b, s in zip(
        jax.tree.leaves(up_decayed),
        jax.tree.leaves(up_plain),
        jax.tree.leaves(_expected_scales(params, 3, 0.5)),
    ):
        np.testing.assert_allclose(a, b * s, rtol=1e-6)
    assert float(jnp.abs(jax.tree.leaves(up_plain)[0]).max()) > 0
