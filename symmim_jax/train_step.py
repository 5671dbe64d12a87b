"""Train state and the one jitted pretraining step shared by every method."""
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from symmim_jax import data, loop, sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array            # int32 scalar: steps taken, skipped ones included
    params: Any                # online branch, trained by gradient
    target_params: Any         # EMA target branch ({} for methods without one)
    opt_state: optax.OptState
    bad_steps: jax.Array       # int32 scalar: non-finite steps skipped in total
    consecutive_bad_steps: jax.Array  # int32 scalar: ... since the last good one


def init_state(method, tx, key, image_shape) -> TrainState:
    """Fresh state; jit this with out_shardings to create it already sharded."""
    params, target_params = method.init(key, jnp.zeros(image_shape, jnp.float32))
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, target_params=target_params,
                      opt_state=tx.init(params), bad_steps=zero,
                      consecutive_bad_steps=zero)


def state_layout(config, method, tx, mesh):
    """-> (init: key -> state, its abstract state, its shardings on `mesh`)."""
    image_shape = (1, config.input.image_size, config.input.image_size, 3)
    init = functools.partial(init_state, method, tx, image_shape=image_shape)
    abstract = jax.eval_shape(init, jax.random.key(0))
    return init, abstract, sharding.state_shardings(abstract, mesh,
                                                    config.mesh.fsdp_min_size)


def loss_and_grads(method, params, target_params, images, key, accum_steps: int = 1,
                   **extras):
    """-> ((loss, metrics), grads) of `images` (and per-image `extras`, e.g.
    labels), as the mean over `accum_steps` micro-batches run one after another
    (a scan: one micro-batch's activations live at a time). Equal to the full
    batch for a loss that is a mean over images; the masks and drop path are
    drawn per micro-batch."""
    grad_fn = jax.value_and_grad(
        lambda p, x, k, e: method.loss(p, target_params, x, k, **e), has_aux=True)
    if accum_steps == 1:
        return grad_fn(params, images, key, extras)
    # Micro-batch i holds rows i, i + k, i + 2k, ...: each stays split over
    # every device that holds a slice of the batch. [k, B/k, ...]
    split = lambda x: x.reshape(-1, accum_steps, *x.shape[1:]).swapaxes(0, 1)
    micro, micro_extras = split(images), jax.tree.map(split, extras)

    def add(total, inputs):
        x, e, index = inputs
        out = grad_fn(params, x, jax.random.fold_in(key, index), e)
        return jax.tree.map(jnp.add, total, out), None

    first_extras = jax.tree.map(lambda x: x[0], micro_extras)
    zeros = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype),
                         jax.eval_shape(grad_fn, params, micro[0], key, first_extras))
    total, _ = jax.lax.scan(add, zeros, (micro, micro_extras, jnp.arange(accum_steps)))
    return jax.tree.map(lambda x: x / accum_steps, total)


def finish_step(state, finite, **updates):
    """`state` with `updates` applied only if the step was `finite`; counts the
    step and the skipped ones. `state` has step, bad_steps and
    consecutive_bad_steps fields (TrainState, linear_probe.ProbeState)."""
    old = {name: getattr(state, name) for name in updates}
    # Select, not multiply: 0 * NaN would still be NaN.
    kept = optax.tree_utils.tree_where(finite, updates, old)
    bad = (~finite).astype(jnp.int32)
    return state.replace(step=state.step + 1, bad_steps=state.bad_steps + bad,
                         consecutive_bad_steps=(state.consecutive_bad_steps + 1) * bad,
                         **kept)


def train_step(state: TrainState, batch, key, *, method, tx, lr_schedule,
               mean, std, nan_at_steps=(), accum_steps: int = 1):
    """(state, batch, key) -> (state, metrics): loss, grads, AdamW, EMA.

    `key` is the run's base key; each step folds in its step number so the
    masks and drop-path of step s do not depend on where the run resumed.
    A step whose loss or gradients are not finite changes nothing but the
    step and the bad-step counters. `nan_at_steps` (config.debug.nan_at_steps)
    poisons the input of those steps, to test exactly that.
    """
    key = jax.random.fold_in(key, state.step)
    images = data.normalize(batch["image"], mean, std)  # [B, H, W, 3] float32
    if nan_at_steps:
        poisoned = jnp.isin(state.step + 1, jnp.asarray(nan_at_steps))
        images = jnp.where(poisoned, jnp.nan, images)

    # Anything besides the image (e.g. "label" when fine-tuning) goes to the loss.
    extras = {name: value for name, value in batch.items() if name != "image"}
    (loss, terms), grads = loss_and_grads(method, state.params, state.target_params,
                                          images, key, accum_steps, **extras)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    target_params, target_metrics = method.update_target(
        state.target_params, params, state.step)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new_state = finish_step(state, finite, params=params, target_params=target_params,
                            opt_state=opt_state)
    metrics = {
        "loss": loss, **terms, **target_metrics,
        "lr": lr_schedule(state.step),
        "grad_norm": grad_norm,
        "param_norm": optax.global_norm(new_state.params),
        "bad_steps": new_state.bad_steps,
        "consecutive_bad_steps": new_state.consecutive_bad_steps,
    }
    return new_state, metrics


def jit_train_step(config, method, tx, lr_schedule, mesh, state_sharding):
    """The pretraining step of `config`, compiled for `mesh` (loop.jit_step)."""
    step = functools.partial(
        train_step, method=method, tx=tx, lr_schedule=lr_schedule,
        mean=config.input.mean, std=config.input.std,
        nan_at_steps=tuple(config.debug.nan_at_steps),
        accum_steps=config.grad_accum_steps)
    return loop.jit_step(step, state_sharding, mesh)
