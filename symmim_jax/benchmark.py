r"""Throughput of the compiled train step, or of the input pipeline alone.

python -m symmim_jax.benchmark --config=symmim_jax/configs/symmim.py:B/16 \
    --config.batch_size=256 [--config.model.remat=dots] [--steps=20]
python -m symmim_jax.benchmark --config=symmim_jax/configs/demo.py --mode=input

Prints one JSON line. `step` mode times the jitted step on one batch already
on the devices (random uint8 images), after warm-up: images/s, step time,
FLOPs per step from XLA's cost analysis, TFLOP/s and MFU per device. `input`
mode times `pipeline.make_train_iterator` alone: images/s per host and per CPU
core. Compare the two to see whether input or compute bounds a run.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from symmim_jax import methods, pretrain  # noqa: E402
from symmim_jax.data import pipeline, sources  # noqa: E402
from symmim_jax.models import vit  # noqa: E402
from symmim_jax.train import costs, distributed, run, sharding, targets  # noqa: E402
from symmim_jax.train.step import jit_train_step  # noqa: E402


def build(config):
    """The pretraining step's objective, optimizer and schedule (a 1000-step run)."""
    task = pretrain.Pretraining(config)
    task.check_config()
    length = run.RunLength(steps_per_epoch=1000, total_steps=1000, warmup_steps=100)
    return task.build(length, run.DataFacts(sources.SYNTHETIC_EXAMPLES))


def time_step(config, steps: int, warmup: int) -> dict:
    mesh = sharding.make_mesh(config.mesh)
    method, tx, schedule = build(config)
    init, abstract = run.abstract_state(config, method, tx, mesh)
    state_sharding = run.shardings_of(abstract)
    state = jax.jit(init, out_shardings=state_sharding)(jax.random.key(0))
    synthetic = config.copy_and_resolve_references()
    with synthetic.unlocked():
        synthetic.dataset.name = sources.SYNTHETIC
    batch = sharding.global_batch(next(pipeline.make_train_iterator(synthetic)), mesh)
    key = jax.random.key(1)
    flops = costs.model_flops(config, build)
    step = jit_train_step(config, method, tx, schedule, state_sharding, mesh)
    compiled = step.lower(state, batch, key).compile()
    for _ in range(warmup):
        state, metrics = compiled(state, batch, key)
    jax.block_until_ready((state, metrics))
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, batch, key)
    jax.block_until_ready((state, metrics))
    seconds = (time.perf_counter() - start) / steps

    devices = jax.device_count()
    device = jax.devices()[0]
    chip = targets.chip_of_device_kind(device.device_kind)
    peak = None if chip is None else chip.peak_flops / 1e12
    achieved = flops / seconds / devices / 1e12
    stats = device.memory_stats() or {}
    size = vit.decode_variant(config.model.variant)
    return {
        "step_ms": round(seconds * 1e3, 2),
        "images_per_sec": round(config.batch_size / seconds, 2),
        "images_per_sec_per_device": round(config.batch_size / seconds / devices, 2),
        "flops_per_step": flops,
        "tflops_per_sec_per_device": round(achieved, 4),
        "peak_tflops_per_device": peak,
        "mfu": None if peak is None else round(achieved / peak, 4),
        "peak_memory_bytes_per_device": stats.get("peak_bytes_in_use"),
        "compiled_memory_bytes_per_device": costs.memory(compiled)["total"],
        "mesh": {name: int(n) for name, n in mesh.shape.items()},
        "attention_impl": method.encoder.attention_impl,
        "head_dim": size.width // size.num_heads,
        "loss": float(metrics["loss"]),
    }


def time_input(config, steps: int, warmup: int) -> dict:
    batches = pipeline.make_train_iterator(config)
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    seconds = time.perf_counter() - start
    per_host = config.batch_size // jax.process_count() * steps / seconds
    cores = len(os.sched_getaffinity(0))
    return {
        "images_per_sec_per_host": round(per_host, 2),
        "cpu_cores": cores,
        "images_per_sec_per_core": round(per_host / cores, 2),
        "dataset": config.dataset.name,
    }


def benchmark(config, mode: str, steps: int, warmup: int) -> dict:
    run.checked(run.check_config, config, jax.device_count(), jax.process_count())
    run.checked(lambda: methods.get(config.method).check_config(config))
    result = (time_step if mode == "step" else time_input)(config, steps, warmup)
    return {
        "mode": mode,
        "variant": config.model.variant,
        "image_size": config.input.image_size,
        "batch_size": config.batch_size,
        "dtype": config.model.dtype,
        "remat": config.model.remat,
        "grad_accum_steps": config.grad_accum_steps,
        "device_kind": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "steps": steps,
        **result,
    }


def main(argv):
    del argv
    try:
        distributed.initialize_from_flags()
        result = benchmark(
            flags.FLAGS.config, flags.FLAGS.mode, flags.FLAGS.steps, flags.FLAGS.warmup
        )
    except (run.ConfigError, distributed.DistributedError) as err:
        sys.exit(f"Config error: {err}")
    if jax.process_index() == 0:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    # Defined here, not on import, so tests can import this next to pretrain.
    config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
    flags.DEFINE_enum(
        "mode", "step", ["step", "input"], "Time the train step, or the input pipeline alone."
    )
    flags.DEFINE_integer("steps", 10, "Timed steps (or batches).", lower_bound=1)
    flags.DEFINE_integer("warmup", 2, "Untimed steps (or batches) first.", lower_bound=0)
    flags.mark_flags_as_required(["config"])
    app.run(main)
