r"""Compile a run's real train step for the GPUs or TPU pod it is meant for, on this
CPU host (ahead of time), and say whether it fits and how fast it can be.

python -m symmim_jax.aot --config=symmim_jax/configs/symmim.py:B/16 --target=h100x8
python -m symmim_jax.aot --config=symmim_jax/configs/symmim.py:L/16 --target=v5p-128 \
    --config.mesh.fsdp=8 --config.model.remat=full --find_max_batch

Prints one JSON line: the target and its mesh, the batch, memory per device
(arguments + outputs + temporaries - aliased) against the device's, whether it
fits within --memory_margin, model FLOPs per step (as the benchmark counts
them), XLA's bytes accessed where it gives them (TPU), the attention kernel in
the program (cuDNN's fused attention or XLA's), collectives by kind, the compile
time, and the roofline: the step can be no faster than its FLOPs at the chip's
peak nor than its memory traffic at the chip's bandwidth. `--find_max_batch`
searches the largest batch per device that fits.

Targets: h100x8, h100x8x2 (2 hosts), h200x8, a100x8, v4-32, v5e-256, v5e-8,
v5p-128, v5p-16, v5p-8 (train/targets.py has their chips and topologies). The compilers come
from requirements-aot.txt (`make test` installs them into .venv/aot_plugins).
Nothing is read from the dataset: ImageNet-1k's size and classes are assumed
unless config.dataset names Fashion-MNIST.
"""

import os
import pathlib
import sys

# The compilers are plugins in their own folder, so that ordinary runs on this
# machine never try to start a GPU or TPU; arrays of the host stay on the CPU.
_PLUGINS = pathlib.Path(sys.prefix) / "aot_plugins"
if _PLUGINS.is_dir():
    sys.path.insert(0, str(_PLUGINS))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# libtpu otherwise asks the (absent) metadata server who it is, and lets one
# process at a time load it (a lock meant for processes sharing real chips).
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import json  # noqa: E402
import time  # noqa: E402

from absl import app, flags, logging  # noqa: E402
import jax  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from symmim_jax import finetune, linear_probe, pretrain  # noqa: E402
from symmim_jax.models import vit  # noqa: E402
from symmim_jax.train import costs, run, sharding, step, targets  # noqa: E402

# Examples and classes of the datasets the presets name; a run's length (and so
# its schedules) needs them, its compiled step does not.
DATASETS = {
    "imagenet2012": run.DataFacts(1_281_167, 1000),
    "fashion_mnist_debian": run.DataFacts(60_000, 10),
}


def task_for(config) -> run.Task:
    """The task a config is for: pretraining, fine-tuning or the linear probe."""
    if "method" in config:
        return pretrain.Pretraining(config)
    if "finetune" in config:
        return finetune.FineTuning(config)
    if "probe" in config:
        return linear_probe.LinearProbing(config)
    raise run.ConfigError("the config is not a pretraining, fine-tuning or probing config.")


def for_target(config, target: targets.Target):
    """`config` with 'auto' attention resolved for the target's platform (the
    host's own platform is the CPU)."""
    config = config.copy_and_resolve_references()
    size = vit.decode_variant(config.model.variant)
    with config.unlocked():
        config.model.attention_impl = vit.attention_implementation(
            config.model.attention_impl,
            config.model.dtype,
            size.width // size.num_heads,
            target.attention_platform,
        )
    return config


def build(config, facts: run.DataFacts):
    """(task, objective, tx, lr schedule) of `config`, checked, without data."""
    task = task_for(config)
    run.checked(task.check_config)
    length = run.checked(run.run_length, config, facts.num_examples)
    return (task, *task.build(length, facts))


def compile_step(config, target: targets.Target, devices: list, margin: float) -> dict:
    """Compiles the train step of `config` for `devices` -> the report."""
    facts = DATASETS.get(config.dataset.name, DATASETS["imagenet2012"])
    run.checked(run.check_config, config, len(devices), targets.num_hosts(devices))
    task, objective, tx, lr_schedule = build(config, facts)
    mesh = run.checked(sharding.make_mesh, config.mesh, devices)
    _, abstract = run.abstract_state(config, objective, tx, mesh)
    jitted = step.jit_train_step(
        config, objective, tx, lr_schedule, run.shardings_of(abstract), mesh
    )
    input_spec = task.input_spec(config.batch_size)
    started = time.perf_counter()
    lowered = jitted.lower(
        abstract, costs.abstract_batch(input_spec, mesh), costs.abstract_key(mesh)
    )
    report = {"compile_seconds": None, "fits": False, "memory_per_device_bytes": None}
    try:
        compiled = lowered.compile(targets.compiler_options(target))
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        # TPU compilers refuse a program that cannot fit in HBM.
        report["error"] = str(err).splitlines()[0][:300]
        return report
    report["compile_seconds"] = round(time.perf_counter() - started, 1)
    memory = costs.memory(compiled)
    hlo = compiled.as_text()
    flops = costs.model_flops(config, lambda c: build(c, facts)[1:], input_spec)
    xla_costs = compiled.cost_analysis() or {}
    bytes_accessed = xla_costs.get("bytes accessed")
    # Without XLA's count (GPU), the step reads its arguments and writes its
    # outputs at least once: a lower bound on its memory traffic.
    traffic = bytes_accessed or memory["arguments"] + memory["outputs"]
    return {
        **report,
        "memory_per_device_bytes": memory["total"],
        "memory_breakdown_bytes": memory,
        "fits": memory["total"] <= margin * target.chip.memory_bytes,
        "flops_per_step": flops,
        "bytes_accessed": bytes_accessed,
        "attention": costs.attention_kernel(hlo),
        "collectives": costs.collectives(hlo),
        **costs.roofline(flops / len(devices), traffic, target.chip),
    }


TASK_NAMES = {
    pretrain.Pretraining: "pretraining",
    finetune.FineTuning: "fine-tuning",
    linear_probe.LinearProbing: "linear probe",
}


def describe(config, target: targets.Target, devices: list, margin: float) -> dict:
    mesh_shape = run.checked(sharding.mesh_shape, config.mesh, len(devices))
    return {
        "target": target.name,
        "chip": target.chip.name,
        "devices": len(devices),
        "hosts": targets.num_hosts(devices),
        "mesh": {"data": mesh_shape[0], "fsdp": mesh_shape[1]},
        "variant": config.model.variant,
        "task": TASK_NAMES[type(task_for(config))],
        "method": config.get("method"),
        "batch_size": config.batch_size,
        "batch_per_device": config.batch_size / len(devices),
        "grad_accum_steps": config.grad_accum_steps,
        "remat": config.model.remat,
        "dtype": config.model.dtype,
        "attention_impl": config.model.attention_impl,
        "device_memory_bytes": target.chip.memory_bytes,
        "memory_margin": margin,
    }


def with_batch(config, batch_size: int):
    config = config.copy_and_resolve_references()
    config.batch_size = batch_size
    return config


def find_max_batch(
    config, target, devices, margin, max_compiles: int = 8, resolution: float = 0.0
) -> dict:
    """The largest batch per device that fits: compiles at the config's batch,
    then at batches read off lines through the memory of compiled ones (memory
    grows about linearly with the batch; see `_next_guess`), until the largest
    fitting batch is known to within `resolution` of itself (0: to one batch per
    device, or one micro-batch's worth with accumulation). XLA's memory is not
    monotonic in the batch, so this is the largest fit found, not a bound."""
    unit = config.grad_accum_steps  # per device: every micro-batch splits over all
    per_device = max(unit, config.batch_size // len(devices) // unit * unit)
    fits, fails, seen = 0, None, {}
    while len(seen) < max_compiles:
        seen[per_device] = compile_step(
            with_batch(config, per_device * len(devices)), target, devices, margin
        )
        if seen[per_device]["fits"]:
            fits = max(fits, per_device)
        else:
            fails = per_device if fails is None else min(fails, per_device)
        step = max(unit, int(fits * resolution) // unit * unit)
        guess = _next_guess(seen, fits, fails, step, target.chip.memory_bytes * margin)
        if guess is None:
            break
        per_device = guess
    best = seen.get(fits, {})
    return {
        "max_batch_per_device": fits,
        "max_global_batch": fits * len(devices),
        "first_batch_per_device_not_fitting": fails,
        "search": {b: r["memory_per_device_bytes"] for b, r in sorted(seen.items())},
        "at_max": best,
    }


def _next_guess(seen, fits, fails, unit, limit):
    """The next batch per device to compile, or None when the largest that
    fits is known to within `unit`. Without a failure yet: along the line
    through the two largest batches, but no further than doubling or four
    times what memory proportional to the batch would allow (near-flat memory
    at small batches must not send the guess to a batch 30 times too large).
    With one: on the line between the largest fit and the smallest failure
    (regula falsi), at least `unit` above the fit, bisecting where that line
    gives nothing new."""
    if fails is not None and fails - fits <= unit:
        return None
    memory = {b: r["memory_per_device_bytes"] for b, r in seen.items()}
    if fails is None:
        guess = 2 * max(fits, unit)
        (b0, m0), (b1, m1) = sorted(memory.items())[-2:] if len(memory) > 1 else [(0, 0)] * 2
        if m0 is not None and m1 is not None and m1 > m0:
            line = b1 + (limit - m1) * (b1 - b0) / (m1 - m0)
            guess = int(min(line, max(guess, 4 * b1 * limit / m1)))
    elif fits and memory[fits] is not None and memory[fails] is not None:
        guess = int(fits + (limit - memory[fits]) * (fails - fits) / (memory[fails] - memory[fits]))
    else:
        guess = (fits + fails) // 2
    guess = max(fits + unit, guess // unit * unit)
    if fails is not None:
        guess = min(guess, fails - unit)
        if guess in seen:
            guess = max(fits + unit, (fits + fails) // 2 // unit * unit)
    return None if guess in seen else guess


def report(config, target_name: str, margin: float, search: bool, resolution: float) -> dict:
    """The command's JSON line; run.ConfigError for a bad target, mesh or batch."""
    target = run.checked(targets.get, target_name)
    devices = targets.devices(target)
    config = run.checked(for_target, config, target)
    result = describe(config, target, devices, margin)
    if search:
        result.update(find_max_batch(config, target, devices, margin, resolution=resolution))
    else:
        result.update(compile_step(config, target, devices, margin))
    return result


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)
    try:
        result = report(
            flags.FLAGS.config,
            flags.FLAGS.target,
            flags.FLAGS.memory_margin,
            flags.FLAGS.find_max_batch,
            flags.FLAGS.batch_resolution,
        )
    except run.ConfigError as err:
        sys.exit(f"Config error: {err}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    config_flags.DEFINE_config_file(
        "config", None, "Path to a config file (FILE.py or FILE.py:ARG).", lock_config=True
    )
    flags.DEFINE_string("target", None, f"One of {sorted(targets.TARGETS)}.")
    flags.DEFINE_float("memory_margin", 0.9, "Fits: memory <= margin x the device's memory.")
    flags.DEFINE_bool("find_max_batch", False, "Search the largest batch per device that fits.")
    flags.DEFINE_float(
        "batch_resolution",
        0.0,
        "--find_max_batch stops once the largest batch that fits is known to within this "
        "fraction of itself (0: exactly; 0.1 saves compiles of large models).",
    )
    flags.mark_flags_as_required(["config", "target"])
    app.run(main)
