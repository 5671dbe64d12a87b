"""Train state and the one jitted pretraining step shared by every method."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from symmim_jax import data


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
               mean, std, nan_at_steps=()):
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

    def loss_fn(params):
        return method.loss(params, state.target_params, images, key, **extras)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
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
