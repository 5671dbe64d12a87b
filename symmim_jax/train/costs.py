"""What a compiled step costs: model FLOPs, memory per device, collectives, the
attention kernel it uses, and the roofline bound on its time.

Model FLOPs are XLA's count on the step as written (before partitioning and
optimization) with remat off, one micro-batch and XLA's attention, so they are
the work the model needs, the same whatever the mesh, remat, kernels or backend; the benchmark and
the ahead-of-time compiler (aot.py) report the same figure.
"""

import collections
import re

import jax
import jax.numpy as jnp

from symmim_jax.train import run, sharding, step

COLLECTIVES = (
    "all-gather",
    "all-reduce",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
    "collective-broadcast",
    "ragged-all-to-all",
)
# An opcode follows the result type's space and precedes its operands' '(';
# instruction names (%all-reduce.3) and metadata do not match. Async pairs
# count once, at their -start.
_COLLECTIVE = re.compile(r"(?<=\s)(" + "|".join(COLLECTIVES) + r")(-start|-done)?\(")
_CUDNN_ATTENTION = re.compile(r'custom_call_target="__cudnn\$fmha[^"]*"')


def model_flops(config, build, input_spec: dict | None = None) -> float:
    """FLOPs of one step of `config` over its whole global batch.

    `build(config) -> (objective, tx, lr_schedule)`; `input_spec` maps batch
    names to ShapeDtypeStructs (default: the images of config.batch_size).
    """
    plain = config.copy_and_resolve_references()
    with plain.unlocked():
        plain.model.remat, plain.grad_accum_steps = "none", 1
        # Lowered for this host's CPU, and XLA counts what a fused kernel hides.
        plain.model.attention_impl = "xla"
        plain.mesh.data, plain.mesh.fsdp = 1, 1
    if input_spec is None:
        size = plain.input.image_size
        input_spec = {"image": jax.ShapeDtypeStruct((plain.batch_size, size, size, 3), jnp.uint8)}
    mesh = sharding.make_mesh(plain.mesh, jax.devices("cpu")[:1])
    objective, tx, lr_schedule = build(plain)
    _, abstract = run.abstract_state(plain, objective, tx, mesh)
    jitted = step.jit_train_step(
        plain, objective, tx, lr_schedule, run.shardings_of(abstract), mesh
    )
    lowered = jitted.lower(abstract, abstract_batch(input_spec, mesh), abstract_key(mesh))
    return float(lowered.cost_analysis()["flops"])


def abstract_batch(input_spec: dict, mesh) -> dict:
    """The batch as ShapeDtypeStructs split over `mesh`'s batch axes."""
    batch_sharding = sharding.batch_sharding(mesh)
    return {
        name: jax.ShapeDtypeStruct(spec.shape, spec.dtype, sharding=batch_sharding)
        for name, spec in input_spec.items()
    }


def abstract_key(mesh):
    key = jax.eval_shape(jax.random.key, 0)
    return jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=sharding.replicated(mesh))


def memory(compiled) -> dict:
    """Bytes per device of a compiled step: its arguments, outputs, temporaries,
    what the donated state shares between them, and the total held at once."""
    analysis = compiled.memory_analysis()
    fields = {
        "arguments": analysis.argument_size_in_bytes,
        "outputs": analysis.output_size_in_bytes,
        "temporaries": analysis.temp_size_in_bytes,
        "aliased": analysis.alias_size_in_bytes,
    }
    total = fields["arguments"] + fields["outputs"] + fields["temporaries"] - fields["aliased"]
    # Some backends (TPU v5e) report no temporaries but a peak that includes them.
    peak = getattr(analysis, "peak_memory_in_bytes", 0) or 0
    return {**fields, "total": max(total, peak)}


def collectives(hlo_text: str) -> dict[str, int]:
    """Collective operations launched per step, by kind."""
    counts = collections.Counter(
        match[1] for match in _COLLECTIVE.finditer(hlo_text) if match[2] != "-done"
    )
    return dict(sorted(counts.items()))


def attention_kernel(hlo_text: str) -> str:
    """'cudnn' when the program calls cuDNN's fused attention, else 'xla'."""
    return "cudnn" if _CUDNN_ATTENTION.search(hlo_text) else "xla"


def roofline(flops_per_device: float, bytes_per_device: float, chip) -> dict:
    """The step can be no faster than its FLOPs at the chip's peak, nor than its
    memory traffic at the chip's bandwidth."""
    seconds = max(flops_per_device / chip.peak_flops, bytes_per_device / chip.memory_bandwidth)
    return {
        "step_ms_lower_bound": round(seconds * 1e3, 3),
        "mfu_upper_bound": round(flops_per_device / (seconds * chip.peak_flops), 4),
        "bound_by": "compute"
        if flops_per_device / chip.peak_flops >= bytes_per_device / chip.memory_bandwidth
        else "memory",
    }
