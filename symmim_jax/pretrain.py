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
import os

# TensorFlow only decodes and crops the input here: no oneDNN kernels needed,
# and without them (and below level 2) it starts silently.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags
import jax

from symmim_jax import data, knn, loop, methods, optim, reconstruction, sharding, validation
# Re-exported: tests and tools name them through this module.
from symmim_jax.loop import TrainingStopped, checkpoint_record  # noqa: F401
from symmim_jax.train_step import jit_train_step, state_layout

loop.define_flags()


def prepare(config, num_devices: int) -> loop.RunLength:
    """Every check that can fail before the workdir is touched -> RunLength."""
    validation.validate(config, num_devices=num_devices,
                        num_processes=jax.process_count())
    try:
        num_examples = data.num_examples(config.dataset)
        if config.knn.every:  # the monitor needs labels and its held-out split
            data.num_classes(config.dataset)
            data.num_examples(data.with_split(config.dataset, config.knn.test_split))
    except ValueError as err:
        raise validation.ConfigError(str(err)) from None
    return loop.run_length(config, num_examples)


def train(config, workdir: str, devices=None):
    """Pretrains `config` in `workdir` on `devices` (default: all of every
    process), resuming from its latest checkpoint."""
    devices = jax.devices() if devices is None else devices
    length = prepare(config, len(devices))
    manager = loop.open_workdir(workdir, config)
    if loop.finished(manager, length, workdir):
        manager.close()
        return

    mesh = sharding.make_mesh(config.mesh, devices)
    method = methods.build(config, length.total_steps)
    tx, lr_schedule = optim.make_optimizer(config.optim, config.batch_size,
                                           length.total_steps, length.warmup_steps)
    init, _, _ = state_layout(config, method, tx, mesh)
    state, state_sharding, run_key, start, _ = loop.make_state(config, init, mesh,
                                                               manager, workdir)
    step_fn = jit_train_step(config, method, tx, lr_schedule, mesh, state_sharding)
    batches = data.make_pretrain_iterator(config, start_step=start)

    def show(step, state, local_batch, writer):
        """A reconstruction grid in TensorBoard (single process: params on host)."""
        if jax.process_count() == 1 and hasattr(method, "reconstruct"):
            grid = reconstruction.reconstruction_grid(
                method, state.params, local_batch["image"][:4],
                jax.random.fold_in(run_key, step), config.input.mean, config.input.std,
                norm_pix=config.get(config.method, {}).get("norm_pix_target", False))
            writer.image(step, "reconstruction", grid)

    hooks = loop.Hooks(show=show, evaluate=knn.monitor(config, method.encoder, mesh))

    loop.run(config, workdir, length, manager, state, start,
             loop.host_batches_step(step_fn, batches, mesh, run_key), run_key, hooks)


def main(argv):
    del argv
    loop.main(train, flags.FLAGS)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
