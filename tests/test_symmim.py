import jax
import jax.numpy as jnp
from methods_helpers import pretrain_loss
import numpy as np
import pytest
import tiny_config

from symmim_jax.methods import symmim
from symmim_jax.ops import ema, losses, patches
from symmim_jax.train import sharding


def _tiny_config(**symmim_overrides):
    config = tiny_config.get_config()
    config.symmim.update(symmim_overrides)
    return config


@pytest.fixture(scope="module")
def setup():
    method = symmim.SymMIM(_tiny_config(), total_steps=10)
    images = jax.random.normal(jax.random.key(0), (3, 16, 16, 3))
    params, target, state = method.init(jax.random.key(1), images)
    # Make the target differ from the online branch, as after some training.
    target = jax.tree.map(lambda x: x + 0.01, target)
    return method, images, params, target, state


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
    method, images, params, target, state = setup
    key = jax.random.key(4)
    loss, terms = pretrain_loss(method, params, images, key, target, state)
    assert float(loss) == pytest.approx(
        float(terms["loss_rec1"] + terms["loss_rec2"] + terms["loss_con"]), rel=1e-6
    )
    only_rec1 = symmim.SymMIM(_tiny_config(weight_rec2=0.0, weight_con=0.0), 10)
    loss1, terms1 = pretrain_loss(only_rec1, params, images, key, target, state)
    assert float(loss1) == pytest.approx(float(terms1["loss_rec1"]), rel=1e-6)


def _terms_on_every_patch(method, params, target, state, images, key):
    """The three terms from both branches run on all N patches (the heads'
    outputs then masked, the online heads' batch statistics over M1): the
    reference for the method's gathered M1 heads."""
    mask_key, drop_key = jax.random.split(key)
    m1, m2 = method.masks(mask_key, images.shape[0])
    stats = lambda part: {"batch_stats": state[part]} if state else {}
    online, _ = method.net.apply(
        {"params": params, **stats("online")},
        images,
        m1,
        train=True,
        branch="online",
        in_m1=m1,
        rngs={"drop_path": drop_key},
        mutable=["batch_stats"],
    )
    tgt, _ = method.net.apply(
        {"params": target, **stats("target")},
        images,
        m2,
        train=False,
        branch="target",
        mutable=["batch_stats"],
    )
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
        # Shifted 2-patch cells: M1 holds 4 to 8 patches, so the gathered rows
        # outside M1 must not count in the heads' batch statistics.
        ({"online_cell_size": 8, "random_offset": True}, 8),
        # One cell: M1 is the whole image or nothing, so gathered rows fall
        # outside M1 and some images have no query at all (no batch statistics
        # then: a batch might have no M1 patch at all).
        ({"online_cell_size": 16, "head_norm": "none"}, 16),
    ],
)
def test_heads_on_m1_patches_equal_heads_on_every_patch(setup, overrides, num_m1):
    images = setup[1]
    method = symmim.SymMIM(_tiny_config(**overrides), total_steps=10)
    params, target, state = method.init(jax.random.key(1), images)
    target = jax.tree.map(lambda x: x + 0.01, target)
    for seed in range(3):
        key = jax.random.key(seed)
        _, terms = pretrain_loss(method, params, images, key, target, state)
        reference = _terms_on_every_patch(method, params, target, state, images, key)
        for name, value in reference.items():
            np.testing.assert_allclose(terms[name], value, rtol=1e-5, err_msg=name)
    assert method.num_m1 == num_m1
    counts = np.asarray(method.masks(jax.random.key(0), 64)[0].sum(1))
    assert counts.max() == num_m1


def test_target_branch_gets_no_gradient(setup):
    method, images, params, target, state = setup
    grad_target = jax.grad(
        lambda t: pretrain_loss(method, params, images, jax.random.key(6), t, state)[0]
    )(target)
    for leaf in jax.tree.leaves(grad_target):
        np.testing.assert_array_equal(leaf, 0.0)
    grad_online = jax.grad(
        lambda p: pretrain_loss(method, p, images, jax.random.key(6), target, state)[0]
    )(params)
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grad_online["predictor"]))


def test_after_step_moves_the_target_by_the_momentum_schedule(setup):
    method, _, params, target, state = setup
    observed = jax.tree.map(lambda x: x + 1.0, state)
    new_target, new_state, metrics = method.after_step(params, target, state, observed, 5)
    assert new_state is observed  # the running statistics of the step's batch
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
        (dict(momentum_base=1.5), "momentum_base"),
        (dict(head_norm="layer"), "head_norm"),
    ],
)
def test_check_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"config.symmim.{field}"):
        symmim.SymMIM.check_config(_tiny_config(**overrides))


def test_reconstruct_is_the_online_pixel_head(setup):
    method, images, params, _, state = setup
    m1, _ = method.masks(jax.random.key(8), images.shape[0])
    pixels = method.reconstruct(params, images, m1)
    want, _ = method.net.apply(
        {"params": params, "batch_stats": state["online"]},
        images,
        m1,
        train=False,
        branch="online",
        mutable=["batch_stats"],
    )
    want = want["pixels"]
    np.testing.assert_allclose(pixels, want, rtol=1e-6)
    assert pixels.shape == (3, 16, 4 * 4 * 3)


def test_batch_norm_state_holds_each_branch_and_none_holds_nothing(setup):
    method, images, params, target, state = setup
    assert set(state) == {"online", "target"}
    assert set(state["online"]) == {"projector", "predictor"}
    assert set(state["target"]) == {"projector"}
    # The norms' scales and shifts are parameters, so the target's EMA copy has them.
    assert set(target["projector"]) == {"fc1", "fc2", "fc3", "bn1", "bn2"}
    plain = symmim.SymMIM(_tiny_config(head_norm="none"), total_steps=10)
    plain_params, plain_target, plain_state = plain.init(jax.random.key(1), images)
    assert plain_state == {}
    assert set(plain_params["projector"]) == {"fc1", "fc2", "fc3"}
    out = plain.loss(
        plain_params,
        {"image": images},
        jax.random.key(0),
        target_params=plain_target,
        method_state={},
    )
    assert out.observations == {}


@pytest.mark.parametrize("head_norm, coupled", [("batch", True), ("none", False)])
def test_an_images_prediction_depends_on_the_others_only_through_batch_norm(
    setup, head_norm, coupled
):
    images = setup[1]
    method = symmim.SymMIM(_tiny_config(head_norm=head_norm), total_steps=10)
    params, _, state = method.init(jax.random.key(1), images)
    variables = {"params": params, **({"batch_stats": state["online"]} if state else {})}
    mask = method.masks(jax.random.key(2), images.shape[0])[0]

    def first_prediction(x):
        out, _ = method.net.apply(
            variables, x, mask, train=False, branch="online", mutable=["batch_stats"]
        )
        return out["prediction"][0].sum()

    grad = jax.grad(first_prediction)(images)  # [B, H, W, 3]
    assert float(jnp.abs(grad[0]).sum()) > 0
    assert (float(jnp.abs(grad[1:]).sum()) > 0) == coupled


def test_running_statistics_do_not_change_the_training_loss(setup):
    method, images, params, target, state = setup
    key = jax.random.key(5)
    loss = lambda s: pretrain_loss(method, params, images, key, target, s)[0]
    shifted = jax.tree.map(lambda x: x + 3.0, state)
    assert float(loss(shifted)) == pytest.approx(float(loss(state)), rel=1e-6)
    for leaf in jax.tree.leaves(jax.grad(loss)(state)):
        np.testing.assert_array_equal(leaf, 0.0)
    # ... but the step's batch moves them (torch's momentum 0.1).
    out = method.loss(params, {"image": images}, key, target_params=target, method_state=state)
    for old, new in zip(jax.tree.leaves(state), jax.tree.leaves(out.observations)):
        assert not np.allclose(old, new)


@pytest.mark.parametrize("data, fsdp", [(8, 1), (2, 4)])
def test_batch_statistics_are_global_under_a_mesh(data, fsdp):
    """The loss, its terms and the new running statistics of a batch split over
    8 devices equal those on one device, which differ from one shard's."""
    config = _tiny_config()
    config.mesh.data, config.mesh.fsdp, config.mesh.fsdp_min_size = data, fsdp, 0
    method = symmim.SymMIM(config, total_steps=10)
    images = jax.random.normal(jax.random.key(0), (8, 16, 16, 3))
    variables = method.init(jax.random.key(1), images)
    key = jax.random.key(4)

    @jax.jit
    def run(variables, images):
        params, target, state = variables
        out = method.loss(params, {"image": images}, key, target_params=target, method_state=state)
        return out.metrics, out.observations

    want = run(variables, images)
    mesh = sharding.make_mesh(config.mesh)
    placed = jax.device_put(variables, sharding.state_shardings(variables, mesh, 0))
    got = run(placed, jax.device_put(images, sharding.batch_sharding(mesh)))
    assert len(got[1]["online"]["projector"]["bn1"]["mean"].sharding.device_set) == 8
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    one_shard = run(variables, images[:1])[1]["online"]["projector"]["bn1"]["mean"]
    assert not np.allclose(one_shard, want[1]["online"]["projector"]["bn1"]["mean"], rtol=1e-2)


@pytest.mark.parametrize("base, want", [(None, ema.run_length_momentum(937)), (0.99, 0.99)])
def test_an_unset_momentum_follows_the_run_length(base, want):
    method = symmim.SymMIM(_tiny_config(momentum_base=base), total_steps=937)
    assert float(method.momentum(0)) == pytest.approx(want)
