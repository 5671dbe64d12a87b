"""The train state, the `Objective` interface, and the one jitted train step.

Every run trains an objective: a pretraining method (`methods/`), fine-tuning
(`finetune.py`) or the linear probe (`linear_probe.py`). The objective says how
to initialize and what loss to take; this step does the rest, the same for all:
input normalization, gradient accumulation, the optimizer update, the updates
that are not gradient steps (an EMA target, method state), and skipping the
steps the guard rejects: a non-finite loss, gradient or updated state, or a
spike (config.guard).
"""

import abc
import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from symmim_jax.ops import patches
from symmim_jax.train import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: steps taken, skipped ones included
    params: Any  # trained by gradient
    target_params: Any  # read by the loss, not trained: EMA target, frozen encoder; {}
    method_state: Any  # the objective's non-parameter state (e.g. BatchNorm stats); {}
    opt_state: optax.OptState
    bad_steps: jax.Array  # int32 scalar: rejected (skipped) steps in total
    consecutive_bad_steps: jax.Array  # int32 scalar: ... since the last good one
    guard: Any  # running levels of the spike guard: {"loss", "update", "kept"}


@dataclasses.dataclass(frozen=True)
class Guard:
    """When a finite step is still rejected (config.guard; 0 turns a test off).

    spike_factor: loss or update norm above factor x its running level (an
      exponential moving average with `spike_decay` over kept steps, trusted
      after `spike_warmup_steps` of them).
    max_update_ratio: update norm above ratio x parameter norm, from step 1 on:
      what a far too large learning rate does before any level exists.
    """

    spike_factor: float = 10.0
    spike_decay: float = 0.9
    spike_warmup_steps: int = 20
    max_update_ratio: float = 1.0

    @classmethod
    def from_config(cls, guard_config) -> "Guard":
        return cls(**{f.name: guard_config[f.name] for f in dataclasses.fields(cls)})

    def levels(self):
        zero = jnp.zeros((), jnp.float32)
        return {"loss": zero, "update": zero, "kept": jnp.zeros((), jnp.int32)}

    def spike(self, levels, loss, update_norm, param_norm):
        """Whether this step is a spike (a bool scalar, computed on device)."""
        kept = levels["kept"]
        debias = 1.0 - self.spike_decay ** kept.astype(jnp.float32)
        trusted = (kept >= self.spike_warmup_steps) & (self.spike_factor > 0)
        loss_level = levels["loss"] / jnp.maximum(debias, 1e-12)
        update_level = levels["update"] / jnp.maximum(debias, 1e-12)
        # Above factor x level for a positive level; losses may be negative.
        loss_spike = loss - loss_level > (self.spike_factor - 1) * jnp.abs(loss_level)
        update_spike = update_norm > self.spike_factor * update_level
        # All-zero parameters (a zero-initialized model) give no scale to compare with.
        too_large = (
            (self.max_update_ratio > 0)
            & (param_norm > 0)
            & (update_norm > self.max_update_ratio * param_norm)
        )
        return (trusted & (loss_spike | update_spike)) | too_large

    def updated(self, levels, loss, update_norm):
        """The running levels after a kept step (skipped ones keep the old)."""
        decay = self.spike_decay
        return {
            "loss": decay * levels["loss"] + (1 - decay) * loss,
            "update": decay * levels["update"] + (1 - decay) * update_norm,
            "kept": levels["kept"] + 1,
        }


@flax.struct.dataclass
class LossOutput:
    """An objective's loss: the scalar minimized, scalars to log, and the
    observations `after_step` turns into new method state (averaged over
    micro-batches like everything else here)."""

    loss: jax.Array
    metrics: dict
    observations: Any = flax.struct.field(default_factory=dict)


class Objective(abc.ABC):
    """What a run trains."""

    @abc.abstractmethod
    def init(self, key, images) -> tuple[Any, Any, Any]:
        """images [1, H, W, 3] -> (params, target_params, method_state)."""

    @abc.abstractmethod
    def loss(self, params, batch: dict, key, *, target_params, method_state) -> LossOutput:
        """batch: "image" normalized float32 [B, H, W, 3] and whatever else the
        input holds ("label", "feature"); differentiated w.r.t. `params`."""

    def after_step(self, params, target_params, method_state, observations, step):
        """What the gradient does not train, updated after the optimizer step
        -> (target_params, method_state, metrics). By default nothing changes."""
        del params, observations, step
        return target_params, method_state, {}


def init_state(objective: Objective, tx, key, image_shape) -> TrainState:
    """Fresh state; jit this with out_shardings to create it already sharded."""
    params, target_params, method_state = objective.init(key, jnp.zeros(image_shape, jnp.float32))
    zero = jnp.zeros((), jnp.int32)
    return TrainState(
        step=zero,
        params=params,
        target_params=target_params,
        method_state=method_state,
        opt_state=tx.init(params),
        bad_steps=zero,
        consecutive_bad_steps=zero,
        guard=Guard().levels(),
    )


def loss_and_grads(objective: Objective, state: TrainState, batch: dict, key, accum_steps: int = 1):
    """-> (LossOutput, grads) of `batch`, as the mean over `accum_steps`
    micro-batches run one after another (a scan: one micro-batch's activations
    live at a time). Equal to the full batch for a loss that is a mean over
    examples; masks and drop path are drawn per micro-batch."""

    def grad_fn(params, micro_batch, micro_key):
        def loss(p):
            out = objective.loss(
                p,
                micro_batch,
                micro_key,
                target_params=state.target_params,
                method_state=state.method_state,
            )
            return out.loss, out

        return jax.grad(loss, has_aux=True)(params)[::-1]  # (out, grads)

    if accum_steps == 1:
        return grad_fn(state.params, batch, key)
    # Micro-batch i holds rows i, i + k, i + 2k, ...: each stays split over
    # every device that holds a slice of the batch. [k, B/k, ...]
    micro = jax.tree.map(lambda x: x.reshape(-1, accum_steps, *x.shape[1:]).swapaxes(0, 1), batch)

    def add(total, inputs):
        micro_batch, index = inputs
        out = grad_fn(state.params, micro_batch, jax.random.fold_in(key, index))
        return jax.tree.map(jnp.add, total, out), None

    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(
        lambda leaf: jnp.zeros(leaf.shape, leaf.dtype),
        jax.eval_shape(grad_fn, state.params, first, key),
    )
    total, _ = jax.lax.scan(add, zeros, (micro, jnp.arange(accum_steps)))
    return jax.tree.map(lambda x: x / accum_steps, total)


def model_inputs(batch: dict, step, mean, std, nan_at_steps=()) -> dict:
    """Host batch -> the objective's batch: a uint8 "image" normalized; every
    float input NaN at `nan_at_steps` (config.debug.nan_at_steps, to test the
    skipping of non-finite steps)."""
    batch = dict(batch)
    if "image" in batch:
        batch["image"] = patches.normalize(batch["image"], mean, std)  # [B, H, W, 3]
    if nan_at_steps:
        poisoned = jnp.isin(step + 1, jnp.asarray(nan_at_steps))
        batch = {
            name: jnp.where(poisoned, jnp.nan, x) if jnp.issubdtype(x.dtype, jnp.floating) else x
            for name, x in batch.items()
        }
    return batch


def train_step(
    state: TrainState,
    batch,
    key,
    *,
    objective: Objective,
    tx,
    lr_schedule,
    mean,
    std,
    nan_at_steps=(),
    accum_steps: int = 1,
    guard: Guard = Guard(),
):
    """(state, batch, key) -> (state, metrics): loss, grads, update, after_step.

    `key` is the run's base key; each step folds in its step number so the
    masks and drop path of step s do not depend on where the run resumed. A
    step whose loss, gradients or updated parameters are not finite, or that
    `guard` calls a spike, changes nothing but the step and the bad-step
    counters. The decision is taken here, on device: no host sync.
    """
    key = jax.random.fold_in(key, state.step)
    batch = model_inputs(batch, state.step, mean, std, nan_at_steps)
    out, grads = loss_and_grads(objective, state, batch, key, accum_steps)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    target_params, method_state, after_metrics = objective.after_step(
        params, state.target_params, state.method_state, out.observations, state.step
    )
    grad_norm, update_norm = optax.global_norm(grads), optax.global_norm(updates)
    param_norm = optax.global_norm(state.params)
    finite = jnp.isfinite(out.loss) & jnp.isfinite(grad_norm) & jnp.isfinite(update_norm)
    # A finite gradient can still meet a damaged optimizer moment: check the result.
    finite &= jnp.isfinite(optax.global_norm((params, target_params)))
    keep = finite & ~guard.spike(state.guard, out.loss, update_norm, param_norm)
    new = {
        "params": params,
        "target_params": target_params,
        "method_state": method_state,
        "opt_state": opt_state,
        "guard": guard.updated(state.guard, out.loss, update_norm),
    }
    new_state = _kept_or_skipped(state, keep, new)
    metrics = {
        "loss": out.loss,
        **out.metrics,
        **after_metrics,
        "lr": lr_schedule(state.step),
        "grad_norm": grad_norm,
        "update_norm": update_norm,
        "param_norm": optax.global_norm(new_state.params),
        "bad_steps": new_state.bad_steps,
        "consecutive_bad_steps": new_state.consecutive_bad_steps,
    }
    return new_state, metrics


def _kept_or_skipped(state: TrainState, keep, new: dict) -> TrainState:
    """The next state: `new` where kept, else the old one with the skip counted."""
    old = {name: getattr(state, name) for name in new}
    bad = (~keep).astype(jnp.int32)
    # Select, not multiply: 0 * NaN would still be NaN.
    return state.replace(
        step=state.step + 1,
        bad_steps=state.bad_steps + bad,
        consecutive_bad_steps=(state.consecutive_bad_steps + 1) * bad,
        **optax.tree_utils.tree_where(keep, new, old),
    )


def step_function(config, objective: Objective, tx, lr_schedule, **options):
    """train_step(state, batch, key) of `config` (its input normalization),
    not compiled; `options` are train_step's keywords."""
    return functools.partial(
        train_step,
        objective=objective,
        tx=tx,
        lr_schedule=lr_schedule,
        mean=config.input.mean,
        std=config.input.std,
        **options,
    )


def jit_train_step(config, objective: Objective, tx, lr_schedule, state_sharding, mesh):
    """The train step of `config`, compiled for `mesh`: state donated (updated
    in place), batch split over the batch axes, metrics replicated. Nothing in
    it waits on the host, so steps queue up on the devices."""
    step = step_function(
        config,
        objective,
        tx,
        lr_schedule,
        nan_at_steps=tuple(config.debug.nan_at_steps),
        accum_steps=config.grad_accum_steps,
        guard=Guard.from_config(config.guard),
    )

    def step_on_mesh(*args):  # so that the model can pin activations (sharding.on_batch_axes)
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return step(*args)

    return jax.jit(
        step_on_mesh,
        in_shardings=(state_sharding, sharding.batch_sharding(mesh), sharding.replicated(mesh)),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=0,
    )
