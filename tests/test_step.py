import dataclasses
import functools

import jax
import jax.numpy as jnp
from methods_helpers import pretrain_loss
import numpy as np
import optax
import pytest
import tiny_config

from symmim_jax import methods
from symmim_jax.ops import patches
from symmim_jax.train import optim, sharding
from symmim_jax.train import step as step_lib
from symmim_jax.train.step import init_state, loss_and_grads, step_function, train_step


def _tiny_config():
    config = tiny_config.get_config()
    config.optim.base_lr = 1e-3
    config.optim.base_batch_size = 8
    return config


def _compiled_step(config, mesh, total_steps=50, **step_options):
    method = methods.build(config, total_steps)
    tx, schedule = optim.make_adamw(config.optim, config.batch_size, total_steps, 0)
    init = functools.partial(init_state, method, tx, image_shape=(1, 16, 16, 3))
    shardings = jax.tree.map(
        lambda _: sharding.replicated(mesh), jax.eval_shape(init, jax.random.key(0))
    )
    state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
    step = jax.jit(
        step_function(config, method, tx, schedule, **step_options),
        in_shardings=(shardings, sharding.batch_sharding(mesh), sharding.replicated(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    return state, step


@pytest.fixture(scope="module")
def batch():
    images = np.random.RandomState(0).randint(0, 256, (8, 16, 16, 3)).astype(np.uint8)
    return {"image": images}


def _run_on(devices, batch, fn):
    mesh = sharding.make_mesh(None, devices)
    return jax.device_get(fn(mesh, sharding.global_batch(batch, mesh)))


def test_sharded_gradients_equal_single_device_gradients(batch):
    assert jax.device_count() == 8
    config = _tiny_config()
    method = methods.build(config, 50)
    params, target, state = method.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))

    def grads(mesh, global_batch):
        loss = lambda p, b: pretrain_loss(
            method,
            p,
            patches.normalize(b["image"], config.input.mean, config.input.std),
            jax.random.key(3),
            target,
            state,
        )[0]
        return jax.jit(jax.value_and_grad(loss), out_shardings=sharding.replicated(mesh))(
            params, global_batch
        )

    (loss1, grads1), (loss8, grads8) = (
        _run_on(d, batch, grads) for d in (jax.devices()[:1], jax.devices())
    )
    np.testing.assert_allclose(loss1, loss8, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads1), jax.tree.leaves(grads8)):
        # float32 sums over 8 shards, amplified by the heads' BatchNorm (it
        # divides by a standard deviation summed in another order).
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_sharded_step_equals_single_device_step(batch):
    def two_steps(mesh, global_batch):
        state, step = _compiled_step(_tiny_config(), mesh)
        assert len(global_batch["image"].sharding.device_set) == len(mesh.devices)
        for _ in range(2):
            state, metrics = step(state, global_batch, jax.random.key(7))
        return state, metrics

    (state1, metrics1), (state8, metrics8) = (
        _run_on(d, batch, two_steps) for d in (jax.devices()[:1], jax.devices())
    )
    for name in metrics1:
        np.testing.assert_allclose(metrics1[name], metrics8[name], rtol=1e-4, err_msg=name)
    # Adam's first steps are +-lr wherever |grad| >> eps, so a gradient that is
    # zero up to float noise can flip an update; allow that, and nothing more.
    # The heads' BatchNorm makes more of them (5.1% of the elements here moved
    # by more than 1e-6 after two steps, 2.8% before the blocks pinned their
    # activations to the batch axes, which reorders float sums); a batch
    # statistic taken per device instead of over the global batch would fail
    # the metrics above, and the gradients agree within 1e-4 (test above).
    lr = _tiny_config().optim.base_lr
    diffs = [
        np.abs(a - b).ravel()
        for a, b in zip(
            jax.tree.leaves((state1.params, state1.target_params)),
            jax.tree.leaves((state8.params, state8.target_params)),
        )
    ]
    diffs = np.concatenate(diffs)
    assert diffs.max() <= 2 * lr
    assert np.mean(diffs > 1e-6) < 0.08


def test_steps_on_a_fixed_batch_lower_the_loss(batch):
    mesh = sharding.make_mesh()
    state, step = _compiled_step(_tiny_config(), mesh)
    global_batch = sharding.global_batch(batch, mesh)
    losses = []
    for _ in range(15):
        state, metrics = step(state, global_batch, jax.random.key(7))
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 15
    assert losses[-1] < 0.8 * losses[0], losses
    assert {"loss_rec1", "loss_rec2", "loss_con", "lr", "momentum", "grad_norm"} <= set(metrics)


def test_step_is_compiled_once(batch):
    mesh = sharding.make_mesh()
    state, step = _compiled_step(_tiny_config(), mesh)
    global_batch = sharding.global_batch(batch, mesh)
    for _ in range(3):
        state, _ = step(state, global_batch, jax.random.key(7))
    assert step._cache_size() == 1


def test_non_finite_step_changes_nothing_but_counters(batch):
    mesh = sharding.make_mesh()
    state, step = _compiled_step(_tiny_config(), mesh, nan_at_steps=(2,))
    global_batch = sharding.global_batch(batch, mesh)
    state, _ = step(state, global_batch, jax.random.key(7))
    before = jax.device_get(state)
    state, metrics = step(state, global_batch, jax.random.key(7))  # step 2: NaN
    after = jax.device_get(state)
    assert not np.isfinite(float(metrics["loss"]))
    assert (int(after.step), int(after.bad_steps), int(after.consecutive_bad_steps)) == (2, 1, 1)
    for a, b in zip(
        jax.tree.leaves((before.params, before.target_params, before.opt_state)),
        jax.tree.leaves((after.params, after.target_params, after.opt_state)),
    ):
        np.testing.assert_array_equal(a, b)
    state, metrics = step(state, global_batch, jax.random.key(7))  # step 3: fine
    assert np.isfinite(float(metrics["loss"]))
    assert (int(state.bad_steps), int(state.consecutive_bad_steps)) == (1, 0)
    assert not np.array_equal(
        jax.device_get(state.params["pixel_head"]["kernel"]), after.params["pixel_head"]["kernel"]
    )


def test_accumulated_micro_batches_equal_the_full_batch(batch):
    # Fixed checkerboards and no drop path: the loss is then a mean over images
    # of a deterministic function, which accumulation must reproduce exactly.
    # BatchNorm heads normalize each micro-batch by its own statistics
    # (docs/METHOD.md §2), so the equality holds without them.
    config = _tiny_config()
    config.symmim.random_phase = False
    config.symmim.head_norm = "none"
    method = methods.build(config, 50)
    state = init_state(method, optax.sgd(0.1), jax.random.key(0), (1, 16, 16, 3))
    images = patches.normalize(batch["image"], config.input.mean, config.input.std)
    grads = jax.jit(functools.partial(loss_and_grads, method), static_argnums=3)

    def loss_terms_grads(images, accum_steps):
        out, grads_ = grads(state, {"image": images}, jax.random.key(3), accum_steps)
        return (out.loss, out.metrics), grads_

    (loss1, terms1), grads1 = loss_terms_grads(images, 1)
    (loss4, terms4), grads4 = loss_terms_grads(images, 4)
    np.testing.assert_allclose(loss1, loss4, rtol=1e-6)
    for name in terms1:
        np.testing.assert_allclose(terms1[name], terms4[name], rtol=1e-6, err_msg=name)
    for a, b in zip(jax.tree.leaves(grads1), jax.tree.leaves(grads4)):
        # float32 sums in another order: noise of ~1e-7 on gradients of ~0.1.
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(a).max())
    # Micro-batches of 2 differ from the full batch: the sums are not trivial.
    (loss_half, _), _ = loss_terms_grads(images[:2], 1)
    assert abs(float(loss_half) - float(loss1)) > 1e-4


class RunningMean(step_lib.Objective):
    """A toy objective with method state: the running mean of the images'
    channel means, updated from the loss's observations."""

    def init(self, key, images):
        return {"w": jnp.zeros(3)}, {}, {"mean": jnp.zeros(3)}

    def loss(self, params, batch, key, *, target_params, method_state):
        x = batch["image"].mean(axis=(1, 2))  # [B, 3]
        loss = ((x @ params["w"] - 1.0) ** 2).mean()
        return step_lib.LossOutput(loss, {}, observations={"mean": x.mean(0)})

    def after_step(self, params, target_params, method_state, observations, step):
        mean = 0.5 * method_state["mean"] + 0.5 * observations["mean"]
        return target_params, {"mean": mean}, {}


@pytest.mark.parametrize("accum_steps", [1, 4])
def test_method_state_follows_the_observations_and_skips_bad_steps(batch, accum_steps):
    objective, tx = RunningMean(), optax.sgd(0.1)
    state = init_state(objective, tx, jax.random.key(0), (1, 16, 16, 3))
    step = jax.jit(
        functools.partial(
            train_step,
            objective=objective,
            tx=tx,
            lr_schedule=optax.constant_schedule(0.1),
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
            nan_at_steps=(2,),
            accum_steps=accum_steps,
        )
    )
    images = (batch["image"] / 255.0 - 0.5) / 0.25
    batch_mean = images.mean(axis=(0, 1, 2))
    state, _ = step(state, batch, jax.random.key(1))
    np.testing.assert_allclose(state.method_state["mean"], 0.5 * batch_mean, rtol=1e-5)
    state, _ = step(state, batch, jax.random.key(1))  # step 2: NaN input, skipped
    np.testing.assert_allclose(state.method_state["mean"], 0.5 * batch_mean, rtol=1e-5)
    state, _ = step(state, batch, jax.random.key(1))
    np.testing.assert_allclose(state.method_state["mean"], 0.75 * batch_mean, rtol=1e-5)


def test_a_damaged_optimizer_moment_is_caught_by_the_updated_parameters(batch):
    """Finite loss and gradients, NaN in an Adam moment: the update is NaN, so
    the step is skipped and the parameters stay as they were."""
    mesh = sharding.make_mesh()
    state, step = _compiled_step(_tiny_config(), mesh)
    global_batch = sharding.global_batch(batch, mesh)
    state, _ = step(state, global_batch, jax.random.key(7))
    moments = jax.tree.map(
        lambda x: x.at[(0,) * x.ndim].set(jnp.nan) if x.ndim else x, state.opt_state
    )
    before = jax.device_get(state.params)
    state, metrics = step(state.replace(opt_state=moments), global_batch, jax.random.key(7))
    assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
    assert int(state.consecutive_bad_steps) == 1
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))):
        np.testing.assert_array_equal(a, b)


def test_far_too_large_updates_are_skipped(batch):
    config = _tiny_config()
    config.optim.base_lr = 1e6
    mesh = sharding.make_mesh()
    state, step = _compiled_step(config, mesh)
    global_batch = sharding.global_batch(batch, mesh)
    before = jax.device_get(state.params)
    for _ in range(3):
        state, metrics = step(state, global_batch, jax.random.key(7))
    assert int(state.consecutive_bad_steps) == 3
    assert float(metrics["update_norm"]) > float(metrics["param_norm"])
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))):
        np.testing.assert_array_equal(a, b)


def test_spike_guard_rejects_a_loss_or_update_far_above_its_level():
    guard = step_lib.Guard(spike_factor=10.0, spike_decay=0.5, spike_warmup_steps=3)
    levels = guard.levels()
    spike = lambda levels, loss, update: bool(guard.spike(levels, loss, update, 1e3))
    for _ in range(2):
        assert not spike(levels, 1e4, 1e2)  # not trusted yet
        levels = guard.updated(levels, 2.0, 1.0)
    levels = guard.updated(levels, 2.0, 1.0)
    assert not spike(levels, 19.0, 9.0)
    assert spike(levels, 21.0, 1.0) and spike(levels, 2.0, 11.0)
    assert not spike(guard.updated(levels, -2.0, 1.0), -1.0, 1.0)  # negative losses too
    off = dataclasses.replace(guard, spike_factor=0.0)
    assert not bool(off.spike(levels, 1e9, 1e9, 1e12))
