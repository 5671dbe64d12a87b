import jax
import jax.numpy as jnp
from methods_helpers import pretrain_loss
import numpy as np
import pytest
import tiny_config

from symmim_jax.methods import symmim
from symmim_jax.ops import losses, patches


def _tiny_config(**symmim_overrides):
    config = tiny_config.get_config()
    config.symmim.update(symmim_overrides)
    return config


@pytest.fixture(scope="module")
def setup():
    method = symmim.SymMIM(_tiny_config(), total_steps=10)
    images = jax.random.normal(jax.random.key(0), (3, 16, 16, 3))
    params, target, _ = method.init(jax.random.key(1), images)
    # Make the target differ from the online branch, as after some training.
    target = jax.tree.map(lambda x: x + 0.01, target)
    return method, images, params, target


def test_target_is_a_copy_without_predictor(setup):
    method = setup[0]
    params, target, _ = method.init(jax.random.key(1), setup[1])
    assert set(params) == {"encoder", "pixel_head", "projector", "predictor"}
    assert set(target) == {"encoder", "pixel_head", "projector"}
    for a, b in zip(jax.tree.leaves(target), jax.tree.leaves({k: params[k] for k in target})):
        np.testing.assert_array_equal(a, b)


def test_masks_have_the_configured_cells(setup):
    method = setup[0]
    m1, m2 = method.masks(jax.random.key(3), 64)
    assert m1.shape == m2.shape == (64, 16)
    np.testing.assert_array_equal(m1.sum(1), 8)
    np.testing.assert_array_equal(m2.sum(1), 8)
    grid2 = np.asarray(m2).reshape(64, 4, 4)
    # Target cells are 2 x 2 patches: each 2 x 2 block is constant.
    np.testing.assert_array_equal(grid2[:, ::2, ::2], grid2[:, 1::2, 1::2])
    grid1 = np.asarray(m1).reshape(64, 4, 4)
    assert np.all(grid1[:, :, 1:] != grid1[:, :, :-1])  # single-patch checkerboard


def test_loss_is_the_weighted_sum_of_the_three_terms(setup):
    method, images, params, target = setup
    key = jax.random.key(4)
    loss, terms = pretrain_loss(method, params, images, key, target)
    assert float(loss) == pytest.approx(
        float(terms["loss_rec1"] + terms["loss_rec2"] + terms["loss_con"]), rel=1e-6
    )
    only_rec1 = symmim.SymMIM(_tiny_config(weight_rec2=0.0, weight_con=0.0), 10)
    loss1, terms1 = pretrain_loss(only_rec1, params, images, key, target)
    assert float(loss1) == pytest.approx(float(terms1["loss_rec1"]), rel=1e-6)


def _terms_on_every_patch(method, params, target, images, key):
    """The three terms from both branches run on all N patches (the heads'
    outputs then masked): the reference for the method's gathered M1 heads."""
    mask_key, drop_key = jax.random.split(key)
    m1, m2 = method.masks(mask_key, images.shape[0])
    online = method.net.apply(
        {"params": params}, images, m1, train=True, online=True, rngs={"drop_path": drop_key}
    )
    tgt = method.net.apply({"params": target}, images, m2, train=False, online=False)
    sc = method.config
    pixels = patches.pixel_targets(images, 4, sc.norm_pix_target)
    return {
        "loss_rec1": losses.masked_l1(online["pixels"], pixels, m1),
        "loss_rec2": losses.masked_l1(online["pixels"], tgt["pixels"], m1 & m2),
        "loss_con": losses.patch_infonce(
            online["prediction"], tgt["projection"], m1, sc.temperature, sc.contrast_dictionary
        ),
    }


@pytest.mark.parametrize(
    "overrides, num_m1",
    [
        ({}, 8),  # 4 x 4 boards of single patches: M1 is exactly half
        ({"contrast_dictionary": "batch"}, 8),
        ({"online_cell_size": 8, "random_offset": True}, 8),  # shifted 2-patch cells
        # One cell: M1 is the whole image or nothing, so gathered rows fall
        # outside M1 and some images have no query at all.
        ({"online_cell_size": 16}, 16),
    ],
)
def test_heads_on_m1_patches_equal_heads_on_every_patch(setup, overrides, num_m1):
    _, images, params, target = setup
    method = symmim.SymMIM(_tiny_config(**overrides), total_steps=10)
    for seed in range(3):
        key = jax.random.key(seed)
        _, terms = pretrain_loss(method, params, images, key, target)
        reference = _terms_on_every_patch(method, params, target, images, key)
        for name, value in reference.items():
            np.testing.assert_allclose(terms[name], value, rtol=1e-5, err_msg=name)
    assert method.num_m1 == num_m1
    counts = np.asarray(method.masks(jax.random.key(0), 64)[0].sum(1))
    assert counts.max() == num_m1


def test_target_branch_gets_no_gradient(setup):
    method, images, params, target = setup
    grad_target = jax.grad(
        lambda t: pretrain_loss(method, params, images, jax.random.key(6), t)[0]
    )(target)
    for leaf in jax.tree.leaves(grad_target):
        np.testing.assert_array_equal(leaf, 0.0)
    grad_online = jax.grad(
        lambda p: pretrain_loss(method, p, images, jax.random.key(6), target)[0]
    )(params)
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grad_online["predictor"]))


def test_after_step_moves_the_target_by_the_momentum_schedule(setup):
    method, _, params, target = setup
    new_target, state, metrics = method.after_step(params, target, {}, {}, 5)
    assert state == {}
    m = float(method.momentum(5))
    assert float(metrics["momentum"]) == pytest.approx(m)
    leaf_t = target["pixel_head"]["kernel"]
    np.testing.assert_allclose(
        new_target["pixel_head"]["kernel"],
        m * leaf_t + (1 - m) * params["pixel_head"]["kernel"],
        rtol=1e-6,
        atol=1e-7,
    )


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(online_cell_size=6), "online_cell_size"),
        (dict(target_cell_size=12), "target_cell_size"),
        (dict(weight_rec1=0.0, weight_rec2=0.0, weight_con=0.0), "weight_rec1"),
        (dict(temperature=0.0), "temperature"),
        (dict(contrast_dictionary="queue"), "contrast_dictionary"),
        (dict(momentum_schedule="step"), "momentum_schedule"),
    ],
)
def test_check_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"config.symmim.{field}"):
        symmim.SymMIM.check_config(_tiny_config(**overrides))


def test_reconstruct_is_the_online_pixel_head(setup):
    method, images, params, _ = setup
    m1, _ = method.masks(jax.random.key(8), images.shape[0])
    pixels = method.reconstruct(params, images, m1)
    want = method.net.apply({"params": params}, images, m1, train=False, online=True)["pixels"]
    np.testing.assert_allclose(pixels, want, rtol=1e-6)
    assert pixels.shape == (3, 16, 4 * 4 * 3)
