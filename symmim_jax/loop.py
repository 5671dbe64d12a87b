"""The training loop shared by pretraining, fine-tuning and linear probing.

A run here is: open the workdir and its checkpoints, stop if the run is already
finished, create or restore the state already sharded, then
input -> step -> metrics -> (evaluation) -> checkpoint until `total_steps`, with
SIGTERM saves, non-finite-step stops and exact resume. The entry points
(`pretrain.py`, `finetune.py`, `linear_probe.py`) say what the state, the step and
the input are.
"""
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from typing import Callable

from absl import flags, logging
import jax
from ml_collections import config_flags
import numpy as np
import tqdm

from symmim_jax import checkpoint, distributed, sharding, validation
from symmim_jax.metrics import MetricWriter
from symmim_jax.paths import as_path


@dataclasses.dataclass(frozen=True)
class RunLength:
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def run_length(config, num_examples: int) -> RunLength:
    """Steps from epochs; `config.total_steps` overrides them and the warm-up
    keeps its share of the run."""
    steps_per_epoch = num_examples // config.batch_size
    if steps_per_epoch == 0:
        raise validation.ConfigError(
            f"config.batch_size={config.batch_size} is larger than the "
            f"{num_examples} examples of config.dataset.split={config.dataset.split!r}.")
    total = config.total_steps or config.epochs * steps_per_epoch
    warmup = round(total * config.warmup_epochs / config.epochs)
    return RunLength(steps_per_epoch, total, warmup)


def open_workdir(workdir: str, config):
    """Creates the workdir (never clears it) and opens its checkpoints."""
    path = as_path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise validation.ConfigError(f"--workdir={workdir} cannot be created: {err}")
    # A bucket (gs://) says whether it is writable only when written to.
    if "://" not in str(path) and not os.access(path, os.W_OK):
        raise validation.ConfigError(f"--workdir={workdir} is not writable.")
    config_path = path / "config.json"
    if jax.process_index() == 0 and not config_path.exists():
        config_path.write_text(config.to_json_best_effort(indent=2))
    return checkpoint.open_manager(workdir, checkpoint_every=config.checkpoint_every,
                                   keep=config.keep_checkpoints)


def say(message: str):
    """A line for the user, from process 0, that does not break the progress bar."""
    if jax.process_index() == 0:
        tqdm.tqdm.write(message)


def checkpoint_record(config, step: int, run_key, **extra) -> dict:
    return {
        "step": step,
        "rng": np.asarray(jax.random.key_data(run_key)).tolist(),
        "data": {"examples_per_process": step * config.batch_size // jax.process_count(),
                 "process_count": jax.process_count()},
        "config": json.loads(config.to_json_best_effort()),
        **extra,
    }


class StopSignal:
    """Remembers a SIGTERM, what TPU and GPU schedulers send before preempting."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.received = True

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class TrainingStopped(RuntimeError):
    """The run cannot go on: non-finite steps, or a checkpoint that cannot be saved."""


def make_state(config, init: Callable, mesh, manager, workdir: str):
    """-> (state, state sharding, run key, start step, record or None).

    `init(key) -> state` builds a fresh state; it is jitted onto `mesh`
    (replicated, or split over `fsdp` by config.mesh's rules) or replaced by
    the newest intact checkpoint, restored onto these shardings whatever mesh
    wrote it.
    """
    local_batch = config.batch_size // jax.process_count()
    abstract = jax.eval_shape(init, jax.random.key(0))
    state_sharding = sharding.state_shardings(abstract, mesh, config.mesh.fsdp_min_size)
    target = jax.tree.map(
        lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
        abstract, state_sharding)
    restored = checkpoint.restore_newest_intact(
        manager, target, as_path(workdir) / "unreadable_checkpoints")
    if restored is None:
        init_key, run_key = jax.random.split(jax.random.key(config.seed))
        state = jax.jit(init, out_shardings=state_sharding)(init_key)
        return state, state_sharding, run_key, 0, None
    state, record, latest = restored
    position = record["data"]
    if position["process_count"] != jax.process_count():
        logging.warning("Checkpoint was written by %d processes, running on %d: the "
                        "data order after step %d differs from the original run.",
                        position["process_count"], jax.process_count(), latest)
    if position["examples_per_process"] != latest * local_batch:
        logging.warning("Batch size changed since step %d; input restarts at the "
                        "matching position for the new batch size.", latest)
    run_key = jax.random.wrap_key_data(np.asarray(record["rng"], np.uint32))
    say(f"Resumed from step {latest} of {manager.directory}")
    return state, state_sharding, run_key, latest, record


def finished(manager, length: RunLength, workdir: str) -> bool:
    """Whether the workdir already holds the whole run (said to the user)."""
    latest = manager.latest_step()
    if latest is None or latest < length.total_steps:
        return False
    say(f"{workdir} already holds a finished run at step {latest} "
        f"(total_steps={length.total_steps}); nothing to do. Set a larger "
        "--config.total_steps to continue it.")
    return True


@dataclasses.dataclass
class Hooks:
    """What a run does besides stepping."""
    # Every `config.visualize_every` steps: (step, state, host batch, writer).
    show: Callable | None = None
    # (step, state) -> scalars written with the step's line, or None; called
    # after every step, so it decides itself when to evaluate.
    evaluate: Callable | None = None
    # Extra JSON fields for the checkpoint record of a step.
    record: Callable = lambda step: {}


def run(config, workdir: str, length: RunLength, manager, state, start: int,
        run_step: Callable, run_key, hooks: Hooks = Hooks()):
    """Steps `state` from `start` to `length.total_steps`; closes `manager`.

    `run_step(state) -> (state, metrics, host batch)` takes one step; metrics
    must hold `loss` and `consecutive_bad_steps`.
    """
    def save(step, state, force=False):
        record = checkpoint_record(config, step, run_key, **hooks.record(step))
        try:
            checkpoint.save(manager, step, state, record, force=force)
        except OSError as err:
            raise TrainingStopped(
                f"Saving checkpoint {step} in {manager.directory} failed ({err}); the "
                f"checkpoints already there ({manager.all_steps()}) are intact.") from err

    writer = MetricWriter(workdir, resume_step=start)
    mesh = state.step.sharding.mesh  # every leaf of the state lives on the run's mesh
    say(f"Training steps {start} -> {length.total_steps} ({length.steps_per_epoch} per "
        f"epoch, {length.warmup_steps} warm-up) on {mesh.size} devices "
        f"(mesh data={mesh.shape[sharding.DATA_AXIS]} x "
        f"fsdp={mesh.shape[sharding.FSDP_AXIS]}, {jax.process_count()} processes); "
        f"metrics in {as_path(workdir) / 'metrics.jsonl'}")
    try:
        with StopSignal() as stop:
            _loop(config, length, state, start, run_step, save, hooks, manager, writer,
                  stop)
    finally:
        # Also on an exception: let a started save land rather than tear it.
        manager.wait_until_finished()
        manager.close()
        writer.close()


def _loop(config, length, state, start, run_step, save, hooks, manager, writer, stop):
    progress = tqdm.tqdm(total=length.total_steps, initial=start, unit="step",
                         disable=jax.process_index() != 0, dynamic_ncols=True)
    last_log_time, last_log_step = time.perf_counter(), start
    for step in range(start + 1, length.total_steps + 1):
        state, metrics, local_batch = run_step(state)
        progress.update()
        evaluation = hooks.evaluate(step, state) if hooks.evaluate else None
        if step % config.log_every == 0 or step == length.total_steps or evaluation:
            metrics = jax.device_get(metrics)  # the only host sync, every log_every
            now = time.perf_counter()
            metrics["images_per_sec"] = (
                (step - last_log_step) * config.batch_size / (now - last_log_time))
            last_log_time, last_log_step = now, step
            writer.write(step, {**metrics, **(evaluation or {})})
            progress.set_postfix(loss=f"{metrics['loss']:.4f}")
            _check_bad_steps(int(metrics["consecutive_bad_steps"]), step, config, manager)
        if hooks.show and config.visualize_every and step % config.visualize_every == 0:
            hooks.show(step, state, local_batch, writer)
        # Multi-process runs learn of a SIGTERM on any host through orbax.
        preempted = manager.reached_preemption(step) or (
            stop.received and jax.process_count() == 1)
        final = step == length.total_steps
        if final or preempted or manager.should_save(step):
            _check_bad_steps(int(jax.device_get(state.consecutive_bad_steps)), step,
                             config, manager)
            save(step, state, force=final or preempted)
        if preempted:
            say(f"Stop signal: saved step {step}; run the same command to resume.")
            break
    progress.close()


def _check_bad_steps(consecutive: int, step: int, config, manager):
    """Stops the run, before it saves again, after too many skipped steps."""
    if consecutive >= config.max_consecutive_bad_steps:
        raise TrainingStopped(
            f"The last {consecutive} steps (up to step {step}) had a non-finite loss or "
            "gradient and were skipped; stopping. The checkpoints in "
            f"{manager.directory} ({manager.all_steps()}) hold the parameters from "
            "before them. Lower config.optim.base_lr, check the input, or raise "
            "config.max_consecutive_bad_steps.")


def jit_step(step_fn, state_sharding, mesh):
    """Jits `step_fn(state, batch, key) -> (state, metrics)` for `mesh`: state
    donated (updated in place), batch split over the batch axes, metrics
    replicated. Nothing in it waits on the host, so steps queue up on the
    devices."""
    return jax.jit(
        step_fn,
        in_shardings=(state_sharding, sharding.batch_sharding(mesh),
                      sharding.replicated(mesh)),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=0)


def host_batches_step(step_fn, batches, mesh, run_key):
    """-> run_step(state) for `run`: next host batch, made global, one step."""
    def run_step(state):
        local_batch = next(batches)
        state, metrics = step_fn(state, sharding.global_batch(local_batch, mesh), run_key)
        return state, metrics, local_batch
    return run_step


def define_flags():
    """--config and --workdir, once per process (the three CLIs share them)."""
    if "workdir" not in flags.FLAGS:
        config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                        lock_config=True)
        flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")


def main(train: Callable, parsed_flags):
    """CLI body: `train(config, workdir)` with one-line messages for known failures."""
    if not parsed_flags["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax and tfds log every save at INFO
    if parsed_flags.workdir is None:
        sys.exit("--workdir is required.")
    try:
        distributed.initialize_from_flags()
    except distributed.DistributedError as err:
        sys.exit(f"Distributed error: {err}")
    if jax.process_index() != 0 and not parsed_flags["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # process 0 speaks for the run
    try:
        train(parsed_flags.config, parsed_flags.workdir)
    except (validation.ConfigError, checkpoint.CheckpointMismatch) as err:
        sys.exit(f"Config error: {err}")
    except TrainingStopped as err:
        sys.exit(f"Stopped: {err}")
