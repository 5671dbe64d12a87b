r"""Pretraining entry point.

python -m symmim_jax.pretrain --config=configs/demo.py --workdir=workdirs/demo

Multi-process runs (TPU pod slices, GPU hosts) add `--distributed` or
`--coordinator_address/--num_processes/--process_id` (see distributed.py).

Running again with the same workdir resumes from its latest checkpoint. The
order of a run:
  1. validate the config and the dataset (nothing is written before this);
  2. open the workdir and its checkpoints; stop if the run is already finished;
  3. build the mesh, the method, the optimizer and the jitted step;
  4. create or restore the state, already sharded;
  5. loop: input -> step -> metrics -> checkpoint, until `total_steps`.
"""
import dataclasses
import json
import os
import signal
import sys
import threading
import time

# TensorFlow only decodes and crops the input here: no oneDNN kernels needed,
# and without them (and below level 2) it starts silently.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging
import jax
from ml_collections import config_flags
import numpy as np
import tqdm

from symmim_jax import (checkpoint, data, distributed, methods, optim, reconstruction,
                        sharding, validation)
from symmim_jax.metrics import MetricWriter
from symmim_jax.paths import as_path
from symmim_jax.train_step import jit_train_step, state_layout

config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")


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


def prepare(config, num_devices: int):
    """Every check that can fail before the workdir is touched -> RunLength."""
    validation.validate(config, num_devices=num_devices,
                        num_processes=jax.process_count())
    try:
        num_examples = data.num_examples(config.dataset)
    except ValueError as err:
        raise validation.ConfigError(str(err)) from None
    return run_length(config, num_examples)


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


def make_state(config, method, tx, mesh, manager, workdir: str):
    """-> (state, base key, start step): restored when a checkpoint exists."""
    local_batch = config.batch_size // jax.process_count()
    # Replicated, or split over `fsdp` (config.mesh); a checkpoint restores
    # onto these shardings whatever mesh wrote it.
    init, abstract, state_sharding = state_layout(config, method, tx, mesh)
    target = jax.tree.map(
        lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
        abstract, state_sharding)
    restored = checkpoint.restore_newest_intact(
        manager, target, as_path(workdir) / "unreadable_checkpoints")
    if restored is None:
        init_key, run_key = jax.random.split(jax.random.key(config.seed))
        state = jax.jit(init, out_shardings=state_sharding)(init_key)
        return state, state_sharding, run_key, 0
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
    return state, state_sharding, run_key, latest


def say(message: str):
    """A line for the user, from process 0, that does not break the progress bar."""
    if jax.process_index() == 0:
        tqdm.tqdm.write(message)


def checkpoint_record(config, step: int, run_key) -> dict:
    return {
        "step": step,
        "rng": np.asarray(jax.random.key_data(run_key)).tolist(),
        "data": {"examples_per_process": step * config.batch_size // jax.process_count(),
                 "process_count": jax.process_count()},
        "config": json.loads(config.to_json_best_effort()),
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


def train(config, workdir: str, devices=None):
    """Pretrains `config` in `workdir` on `devices` (default: all of every
    process), resuming from its latest checkpoint."""
    devices = jax.devices() if devices is None else devices
    length = prepare(config, len(devices))
    manager = open_workdir(workdir, config)
    latest = manager.latest_step()
    if latest is not None and latest >= length.total_steps:
        say(f"{workdir} already holds a finished run at step {latest} "
            f"(total_steps={length.total_steps}); nothing to do. Set a larger "
            "--config.total_steps to continue it.")
        manager.close()
        return

    mesh = sharding.make_mesh(config.mesh, devices)
    method = methods.build(config, length.total_steps)
    tx, lr_schedule = optim.make_optimizer(config.optim, config.batch_size,
                                           length.total_steps, length.warmup_steps)
    state, state_sharding, run_key, start = make_state(config, method, tx, mesh,
                                                       manager, workdir)
    step_fn = jit_train_step(config, method, tx, lr_schedule, mesh, state_sharding)
    batches = data.make_pretrain_iterator(config, start_step=start)

    def run_step(state):
        """-> (state, metrics, this process's host batch)."""
        local_batch = next(batches)
        state, metrics = step_fn(state, sharding.global_batch(local_batch, mesh), run_key)
        return state, metrics, local_batch

    def save(step, state, force=False):
        try:
            checkpoint.save(manager, step, state, checkpoint_record(config, step, run_key),
                            force=force)
        except OSError as err:
            raise TrainingStopped(
                f"Saving checkpoint {step} in {manager.directory} failed ({err}); the "
                f"checkpoints already there ({manager.all_steps()}) are intact.") from err

    writer = MetricWriter(workdir, resume_step=start)

    def show(step, state, local_batch):
        """A reconstruction grid in TensorBoard (single process: params on host)."""
        if jax.process_count() == 1 and hasattr(method, "reconstruct"):
            grid = reconstruction.reconstruction_grid(
                method, state.params, local_batch["image"][:4],
                jax.random.fold_in(run_key, step), config.input.mean, config.input.std,
                norm_pix=config.get(config.method, {}).get("norm_pix_target", False))
            writer.image(step, "reconstruction", grid)

    say(f"Training steps {start} -> {length.total_steps} ({length.steps_per_epoch} per "
        f"epoch, {length.warmup_steps} warm-up) on {len(devices)} devices "
        f"(mesh data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}, "
        f"{jax.process_count()} processes); "
        f"metrics in {as_path(workdir) / 'metrics.jsonl'}")
    try:
        with StopSignal() as stop:
            _loop(config, length, state, start, run_step, save, show, manager, writer,
                  stop)
    finally:
        # Also on an exception: let a started save land rather than tear it.
        manager.wait_until_finished()
        manager.close()
        writer.close()


def _loop(config, length, state, start, run_step, save, show, manager, writer, stop):
    progress = tqdm.tqdm(total=length.total_steps, initial=start, unit="step",
                         disable=jax.process_index() != 0, dynamic_ncols=True)
    last_log_time, last_log_step = time.perf_counter(), start
    for step in range(start + 1, length.total_steps + 1):
        state, metrics, local_batch = run_step(state)
        progress.update()
        if step % config.log_every == 0 or step == length.total_steps:
            metrics = jax.device_get(metrics)  # the only host sync, every log_every
            now = time.perf_counter()
            metrics["images_per_sec"] = (
                (step - last_log_step) * config.batch_size / (now - last_log_time))
            last_log_time, last_log_step = now, step
            writer.write(step, metrics)
            progress.set_postfix(loss=f"{metrics['loss']:.4f}")
            _check_bad_steps(int(metrics["consecutive_bad_steps"]), step, config, manager)
        if config.visualize_every and step % config.visualize_every == 0:
            show(step, state, local_batch)
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


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax and tfds log every save at INFO
    if flags.FLAGS.workdir is None:
        sys.exit("--workdir is required.")
    try:
        distributed.initialize_from_flags()
    except distributed.DistributedError as err:
        sys.exit(f"Distributed error: {err}")
    if jax.process_index() != 0 and not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # process 0 speaks for the run
    try:
        train(flags.FLAGS.config, flags.FLAGS.workdir)
    except (validation.ConfigError, checkpoint.CheckpointMismatch) as err:
        sys.exit(f"Config error: {err}")
    except TrainingStopped as err:
        sys.exit(f"Stopped: {err}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
