"""Train state and the one jitted pretraining step shared by every method."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from symmim_jax import data


@flax.struct.dataclass
class TrainState:
    step: jax.Array            # int32 scalar: optimizer steps taken
    params: Any                # online branch, trained by gradient
    target_params: Any         # EMA target branch ({} for methods without one)
    opt_state: optax.OptState


def init_state(method, tx, key, image_shape) -> TrainState:
    """Fresh state; jit this with out_shardings to create it already sharded."""
    params, target_params = method.init(key, jnp.zeros(image_shape, jnp.float32))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      target_params=target_params, opt_state=tx.init(params))


def train_step(state: TrainState, batch, key, *, method, tx, lr_schedule,
               mean, std):
    """(state, batch, key) -> (state, metrics): loss, grads, AdamW, EMA.

    `key` is the run's base key; each step folds in its step number so the
    masks and drop-path of step s do not depend on where the run resumed.
    """
    key = jax.random.fold_in(key, state.step)
    images = data.normalize(batch["image"], mean, std)  # [B, H, W, 3] float32

    def loss_fn(params):
        return method.loss(params, state.target_params, images, key)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    target_params, target_metrics = method.update_target(
        state.target_params, params, state.step)
    metrics = {
        "loss": loss, **terms, **target_metrics,
        "lr": lr_schedule(state.step),
        "grad_norm": optax.global_norm(grads),
        "param_norm": optax.global_norm(params),
    }
    new_state = TrainState(step=state.step + 1, params=params,
                           target_params=target_params, opt_state=opt_state)
    return new_state, metrics
