"""One skeleton for every run: pretraining, fine-tuning, linear probing.

    check the config (nothing is written before every check passed)
    -> open the workdir (stop if the run is finished)
    -> mesh (config.mesh: data x fsdp)
    -> state: one eval_shape, its shardings, then a fresh state or the newest
       intact checkpoint restored onto this mesh
    -> jit the step -> loop (input, step, metrics, evaluation, checkpoints)
    -> results

A `Task` says what differs: its checks and run length, the objective and the
optimizer, the batches, what a fresh state loads (a pretrained encoder), the
evaluations, and the results.
"""

from collections.abc import Iterator
import dataclasses
import functools
import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from symmim_jax.data import pipeline
from symmim_jax.models import vit
from symmim_jax.train import checkpoint, loop, profiling, provenance, sharding
from symmim_jax.train import step as step_lib
from symmim_jax.train import workdir as workdir_lib
from symmim_jax.train.paths import as_path


class ConfigError(ValueError):
    """A config (or workdir) that cannot work; the message names the field."""


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
        raise ValueError(
            f"config.batch_size={config.batch_size} is larger than the "
            f"{num_examples} examples of config.dataset.split={config.dataset.split!r}."
        )
    total = config.total_steps or config.epochs * steps_per_epoch
    warmup = round(total * config.warmup_epochs / config.epochs)
    return RunLength(steps_per_epoch, total, warmup)


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """What a run must know of its data before it starts."""

    num_examples: int  # in config.dataset.split, all processes together
    num_classes: int | None = None


class Task:
    """What a run trains and evaluates; `run` does the rest. The first three
    steps read nothing (check_config, build) or write nothing (read_inputs), so
    that a run can also be compiled ahead of time without its data (aot.py)."""

    # Where `evaluate`'s scores go in metrics.jsonl and TensorBoard: eval/top1.
    eval_namespace = "eval"

    def __init__(self, config):
        self.config = config

    def check_config(self):
        """The task's own config fields, without reading anything. Raises
        ValueError naming the field and the fix."""

    def read_inputs(self) -> DataFacts:
        """Reads what the run needs before it starts (dataset sizes, a pretrained
        encoder) and checks it; writes nothing. Raises ValueError."""
        raise NotImplementedError

    def build(self, length: RunLength, facts: DataFacts) -> tuple:
        """-> (objective, optax transformation, lr schedule); no I/O."""
        raise NotImplementedError

    def input_spec(self, batch_size: int) -> dict:
        """The global batch the step takes: {name: ShapeDtypeStruct}."""
        size = self.config.input.image_size
        return {"image": jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.uint8)}

    def start(self, mesh, workdir: str):
        """Once the run starts (after build): evaluations, monitors."""

    def batches(self, start_step: int) -> Iterator[dict]:
        """Host batches of this process from `start_step` on, forever."""
        raise NotImplementedError

    def load_pretrained(self, state):
        """A fresh state with what it starts from (host arrays allowed)."""
        return state

    def resumed(self, record: dict):
        """The run resumes from a checkpoint with this record."""

    def record(self) -> dict:
        """Extra fields of each checkpoint's record."""
        return {}

    def evaluate(self, step: int, state) -> dict | None:
        """Scalars logged with this step's line, or None (called every step)."""
        return None

    def show(self, step: int, state, local_batch, writer):
        """Every config.visualize_every steps: pictures for TensorBoard."""

    def finish(self):
        """After the loop returned (finished or stopped by a signal)."""

    def close(self):
        """Always, once `start` has run."""


def check_config(config, num_devices: int, num_processes: int):
    """The fields every run has: model, input, mesh, batch, schedule, cadence."""
    size = vit.check_config(config.model)
    pipeline.check_config(config, size.patch_size)
    sharding.mesh_shape(config.mesh, num_devices)
    if config.mesh.fsdp_min_size < 0:
        raise ValueError(f"config.mesh.fsdp_min_size={config.mesh.fsdp_min_size} must be >= 0.")
    batch, accum = config.batch_size, config.grad_accum_steps
    if accum < 1:
        raise ValueError(f"config.grad_accum_steps={accum} must be >= 1.")
    unit = num_devices * accum  # every micro-batch is split over all devices
    if not (batch > 0 and batch % unit == 0):
        raise ValueError(
            f"config.batch_size={batch} must be a positive multiple of the device count "
            f"{num_devices} x config.grad_accum_steps={accum}; e.g. "
            f"--config.batch_size={max(1, batch // unit) * unit}."
        )
    if batch % num_processes:
        raise ValueError(
            f"config.batch_size={batch} must be divisible by the process count {num_processes}."
        )
    if config.epochs <= 0 or not 0 <= config.warmup_epochs < config.epochs:
        raise ValueError(
            f"config.epochs={config.epochs} must be > 0 and "
            f"config.warmup_epochs={config.warmup_epochs} in [0, epochs)."
        )
    if config.total_steps is not None and config.total_steps <= 0:
        raise ValueError(
            f"config.total_steps={config.total_steps} must be > 0 (or unset to use config.epochs)."
        )
    for field in ("log_every", "checkpoint_every", "keep_checkpoints", "max_consecutive_bad_steps"):
        if config[field] <= 0:
            raise ValueError(f"config.{field}={config[field]} must be > 0.")
    profiling.check_config(config.profile, num_processes)
    if not all(isinstance(s, int) and s > 0 for s in config.debug.nan_at_steps):
        raise ValueError(
            f"config.debug.nan_at_steps={config.debug.nan_at_steps} must hold step numbers >= 1."
        )


def open_workdir(workdir: str, config):
    """Creates the workdir (never clears it), takes its lock, writes or checks
    config.json (workdir.py), and opens its checkpoints -> (manager, lock)."""
    path = as_path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--workdir={workdir} cannot be created: {err}") from None
    # A bucket (gs://) says whether it is writable only when written to.
    if "://" not in str(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"--workdir={workdir} is not writable.")
    lock = checked(workdir_lib.lock, workdir)
    try:
        manager = checkpoint.open_manager(
            workdir, checkpoint_every=config.checkpoint_every, keep=config.keep_checkpoints
        )
        checked(workdir_lib.settle_config, workdir, config, manager.latest_step() is not None)
    except BaseException:
        lock.release()
        raise
    return manager, lock


def _finished(manager, length: RunLength, workdir: str) -> bool:
    """Whether the workdir already holds the whole run (said to the user)."""
    latest = manager.latest_step()
    if latest is None or latest < length.total_steps:
        return False
    loop.say(
        f"{workdir} already holds a finished run at step {latest} "
        f"(total_steps={length.total_steps}); nothing to do. Set a larger "
        "--config.total_steps to continue it."
    )
    return True


def abstract_state(config, objective, tx, mesh):
    """-> (init: key -> a fresh state, the state as ShapeDtypeStructs carrying
    their shardings on `mesh` by config.mesh's rules). One eval_shape."""
    image_shape = (1, config.input.image_size, config.input.image_size, 3)
    init = functools.partial(step_lib.init_state, objective, tx, image_shape=image_shape)
    shapes = jax.eval_shape(init, jax.random.key(0))
    shardings = sharding.state_shardings(shapes, mesh, config.mesh.fsdp_min_size)
    return init, jax.tree.map(
        lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s), shapes, shardings
    )


def shardings_of(abstract):
    return jax.tree.map(lambda leaf: leaf.sharding, abstract)


def make_state(config, init, abstract, manager, workdir: str):
    """-> (state, run key, start step, record or None): a fresh state from
    `init`, jitted onto the shardings of `abstract`, or the newest intact
    checkpoint restored onto them, whatever mesh wrote it."""
    restored = checkpoint.restore_newest_intact(
        manager, abstract, as_path(workdir) / "unreadable_checkpoints"
    )
    if restored is None:
        init_key, run_key = jax.random.split(jax.random.key(config.seed))
        state = jax.jit(init, out_shardings=shardings_of(abstract))(init_key)
        return state, run_key, 0, None
    state, record, latest = restored
    position = record["data"]
    if position["process_count"] != jax.process_count():
        logging.warning(
            "Checkpoint was written by %d processes, running on %d: the "
            "data order after step %d differs from the original run.",
            position["process_count"],
            jax.process_count(),
            latest,
        )
    if position["examples_per_process"] != latest * (config.batch_size // jax.process_count()):
        logging.warning(
            "Batch size changed since step %d; input restarts at the "
            "matching position for the new batch size.",
            latest,
        )
    run_key = jax.random.wrap_key_data(np.asarray(record["rng"], np.uint32))
    loop.say(f"Resumed from step {latest} of {manager.directory}")
    return state, run_key, latest, record


def checked(check, *args):
    """`check(*args)` with its ValueError (a field and its fix) as ConfigError."""
    try:
        return check(*args)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check(task: Task, num_devices: int, num_processes: int):
    """Every config check of the run and its task; reads and writes nothing."""
    checked(check_config, task.config, num_devices, num_processes)
    checked(task.check_config)


def prepare(task: Task, num_devices: int) -> tuple[RunLength, DataFacts]:
    """Every check of the run and its task, before anything is written."""
    check(task, num_devices, jax.process_count())
    facts = checked(task.read_inputs)
    return checked(run_length, task.config, facts.num_examples), facts


def run(task: Task, workdir: str, devices=None):
    """Runs `task` in `workdir` on `devices` (default: all of every process),
    resuming from the workdir's newest intact checkpoint."""
    config = task.config
    devices = jax.devices() if devices is None else list(devices)
    length, facts = prepare(task, len(devices))
    objective, tx, lr_schedule = task.build(length, facts)
    manager, lock = open_workdir(workdir, config)
    try:
        if not _finished(manager, length, workdir):
            _train(task, workdir, devices, manager, (objective, tx, lr_schedule), length)
    finally:
        # Also on an exception: let a started save land rather than tear it.
        manager.wait_until_finished()
        manager.close()
        lock.release()


def _train(task: Task, workdir: str, devices, manager, built, length: RunLength):
    config = task.config
    objective, tx, lr_schedule = built
    mesh = sharding.make_mesh(config.mesh, devices)
    task.start(mesh, workdir)
    try:
        init, abstract = abstract_state(config, objective, tx, mesh)
        state_sharding = shardings_of(abstract)
        state, run_key, start, record = make_state(config, init, abstract, manager, workdir)
        if record is None:
            state = sharding.place(task.load_pretrained(state), state_sharding)
        else:
            task.resumed(record)
        provenance.record_start(workdir, mesh, start if record else None)
        step_fn = step_lib.jit_train_step(config, objective, tx, lr_schedule, state_sharding, mesh)
        run_step = loop.host_batches_step(step_fn, task.batches(start), mesh, run_key)
        loop.run(config, workdir, length, manager, state, start, run_step, run_key, task)
        task.finish()
    finally:
        task.close()
