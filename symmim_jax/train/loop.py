"""The step loop: input -> step -> metrics -> evaluation -> checkpoint, until
`total_steps`, with SIGTERM saves and a stop after too many non-finite steps.

`run.py` builds what it steps; the loop only calls the task's hooks
(`evaluate`, `show`, `record`) at the steps they ask for.
"""

from collections.abc import Callable
import contextlib
import json
import signal
import threading
import time

import jax
import numpy as np
import tqdm

from symmim_jax.train import checkpoint, profiling, sharding
from symmim_jax.train.metrics import MetricWriter, namespaced
from symmim_jax.train.paths import as_path
from symmim_jax.train.progress import Pace, ProgressBar


class TrainingStopped(RuntimeError):
    """The run cannot go on: non-finite steps, or a checkpoint that cannot be saved."""


def say(message: str):
    """A line for the user, from process 0, that does not break the progress bar."""
    if jax.process_index() == 0:
        tqdm.tqdm.write(message)


def checkpoint_record(config, step: int, run_key, **extra) -> dict:
    """The JSON saved beside the state: the run's key, its input position, its config."""
    return {
        "step": step,
        "rng": np.asarray(jax.random.key_data(run_key)).tolist(),
        "data": {
            "examples_per_process": step * config.batch_size // jax.process_count(),
            "process_count": jax.process_count(),
        },
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


def host_batches_step(step_fn, batches, mesh, run_key):
    """-> run_step(state) for `run`: next host batch, made global, one step."""

    def run_step(state):
        local_batch = next(batches)
        state, metrics = step_fn(state, sharding.global_batch(local_batch, mesh), run_key)
        return state, metrics, local_batch

    return run_step


def run(
    config, workdir: str, length, manager, state, start: int, run_step: Callable, run_key, task
):
    """Steps `state` from `start` to `length.total_steps`, saving through `manager`.

    `run_step(state) -> (state, metrics, host batch)` takes one step; metrics
    must hold `loss` and `consecutive_bad_steps`. `task` (run.Task) evaluates,
    shows and adds to the checkpoint record.
    """

    def save(step, state, force=False):
        # orbax waits for the previous save before it starts one: a failure of
        # that save is named with its own step, not this one.
        with saving(manager, manager.latest_step()):
            manager.wait_until_finished()
        record = checkpoint_record(config, step, run_key, **task.record())
        with saving(manager, step):
            checkpoint.save(manager, step, state, record, force=force)

    writer = MetricWriter(workdir, resume_step=start)
    mesh = state.step.sharding.mesh  # every leaf of the state lives on the run's mesh
    say(
        f"Training steps {start} -> {length.total_steps} ({length.steps_per_epoch} per "
        f"epoch, {length.warmup_steps} warm-up) on {mesh.size} devices "
        f"(mesh data={mesh.shape[sharding.DATA_AXIS]} x "
        f"fsdp={mesh.shape[sharding.FSDP_AXIS]}, {jax.process_count()} processes); "
        f"metrics in {as_path(workdir) / 'metrics.jsonl'}"
    )
    try:
        with StopSignal() as stop:
            _loop(config, length, state, start, run_step, save, task, manager, writer, stop)
        with saving(manager, manager.latest_step()):
            manager.wait_until_finished()  # the last save, landed or named
    finally:
        writer.close()


@contextlib.contextmanager
def saving(manager, step):
    """Any failure of a save (started here, or one started earlier and failed
    in orbax's background thread) -> TrainingStopped naming path and cause."""
    try:
        yield
    except checkpoint.NonFiniteState as err:
        raise TrainingStopped(
            f"Checkpoint {step} was not saved: {err}. The checkpoints in "
            f"{manager.directory} ({manager.all_steps()}) hold the state from before."
        ) from err
    except Exception as err:  # orbax and TensorStore raise many types
        raise TrainingStopped(
            f"Saving a checkpoint (step {step}) in {manager.directory} failed "
            f"({checkpoint.first_line(err)}); "
            f"the complete checkpoints already there ({_complete(manager)}) are intact."
        ) from err


def _complete(manager) -> list:
    try:
        return manager.all_steps()
    except Exception:  # the folder itself may be what failed
        return "unknown: the folder cannot be listed"


def _loop(config, length, state, start, run_step, save, task, manager, writer, stop):
    progress = ProgressBar(start, length.total_steps)
    profiler = profiling.StepProfiler(config.profile, writer.workdir, start)
    pace = None
    try:
        for step in range(start + 1, length.total_steps + 1):
            with profiler.step(step, state):
                state, metrics, local_batch = run_step(state)
            with saving(manager, manager.latest_step()):
                manager.check_for_errors()  # a background save that failed: stop now
            final = step == length.total_steps
            profiler.after(step, state, final)
            if pace is None:  # the first step compiled: time from its end on
                jax.block_until_ready(metrics)
                pace = Pace(step, time.perf_counter())
            evaluation = task.evaluate(step, state)
            if step % config.log_every == 0 or final or evaluation:
                metrics = jax.device_get(metrics)  # the host sync, every log_every
                seconds = pace.synced(step, time.perf_counter())
                _write(writer, step, metrics, seconds, config.batch_size, task, evaluation)
                progress.synced(step, pace, loss=f"{metrics['loss']:.4f}")
                _check_bad_steps(int(metrics["consecutive_bad_steps"]), step, config, manager)
            if config.get("visualize_every") and step % config.visualize_every == 0:
                task.show(step, state, local_batch, writer)
            # Multi-process runs learn of a SIGTERM on any host through orbax.
            preempted = manager.reached_preemption(step) or (
                stop.received and jax.process_count() == 1
            )
            if final or preempted or manager.should_save(step):
                _check_bad_steps(
                    int(jax.device_get(state.consecutive_bad_steps)), step, config, manager
                )
                save(step, state, force=final or preempted)
            if preempted:
                say(f"Stop signal: saved step {step}; run the same command to resume.")
                break
    finally:
        profiler.stop()
        progress.close()


def _write(writer, step, metrics, seconds_per_step, batch_size, task, evaluation):
    """One metrics line: the step's under train/, the run's speed under perf/
    (not on a line whose interval held no completed step), the task's
    evaluation under its namespace."""
    scalars = namespaced("train", metrics)
    if seconds_per_step is not None:
        scalars["perf/images_per_sec"] = batch_size / seconds_per_step
    writer.write(step, {**scalars, **namespaced(task.eval_namespace, evaluation or {})})


def _check_bad_steps(consecutive: int, step: int, config, manager):
    """Stops the run, before it saves again, after too many skipped steps."""
    if consecutive >= config.max_consecutive_bad_steps:
        saved = manager.all_steps()
        kept = (
            f"The checkpoints in {manager.directory} ({saved}) hold the parameters from "
            "before them."
            if saved
            else "No checkpoint was saved before them, so none holds their parameters."
        )
        raise TrainingStopped(
            f"The last {consecutive} steps (up to step {step}) had a non-finite loss, "
            f"gradient or update, or a spike (config.guard), and were skipped; stopping. "
            f"{kept} Lower config.optim.base_lr, check the input, or raise "
            "config.max_consecutive_bad_steps."
        )
