"""The accelerators a run is sized for: one table of chip facts, and the slices
users name (h100x8, v5p-128, ...) as the topologies JAX compiles for without
having them (ahead of time, on a CPU host: aot.py).

Chip facts are the vendors' figures: dense bf16 peak, HBM size and bandwidth.
Cloud TPU slice names count TensorCores for v4 and v5p (v5p-128 is 64 chips)
and chips for v5e (v5e-256 is 256 chips); each maps to the runtime's topology.
"""

import dataclasses
import pathlib

from jax.experimental import topologies

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    device_kinds: tuple[str, ...]  # jax's device_kind strings (benchmark's lookup)
    memory_bytes: int  # HBM per chip
    memory_bandwidth: float  # bytes / s
    peak_flops: float  # dense bf16, per chip


CHIPS = {
    chip.name: chip
    for chip in (
        Chip("H100 PCIe", ("H100 PCIe",), 80 * GIB, 2.0e12, 756.0e12),
        Chip("H100", ("H100",), 80 * GIB, 3.35e12, 989.4e12),
        Chip("H200", ("H200",), 141 * 10**9, 4.8e12, 989.4e12),
        Chip("A100", ("A100",), 80 * GIB, 2.039e12, 312.0e12),
        Chip("TPU v4", ("TPU v4",), 32 * GIB, 1.2e12, 275.0e12),
        Chip("TPU v5e", ("TPU v5 lite", "TPU v5e"), 16 * GIB, 0.819e12, 197.0e12),
        Chip("TPU v5p", ("TPU v5p", "TPU v5"), 95 * GIB, 2.765e12, 459.0e12),
    )
}


def chip_of_device_kind(device_kind: str) -> Chip | None:
    """The chip of a jax device_kind ('NVIDIA H100 80GB HBM3'); None for CPUs.
    The more specific names come first in CHIPS, so the first match wins."""
    for chip in CHIPS.values():
        if any(kind in device_kind for kind in chip.device_kinds):
            return chip
    return None


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    chip: Chip
    platform: str  # "cuda" or "tpu"
    topology: str  # GPU: slices x hosts x GPUs per host; TPU: the runtime's name
    gpu_config: str | None = None  # GPU: a GpuTargetConfig text proto in gpu_targets/
    chip_config: str | None = None  # TPU: v4's one device per chip ("megacore")

    @property
    def attention_platform(self) -> str:
        """The platform name vit.attention_implementation takes."""
        return "gpu" if self.platform == "cuda" else self.platform


_GPU_CONFIGS = pathlib.Path(__file__).with_name("gpu_targets")

TARGETS = {
    target.name: target
    for target in (
        Target("h100x1", CHIPS["H100"], "cuda", "1x1x1", "h100_sxm_80gb.txtpb"),  # device checks
        Target("h100x8", CHIPS["H100"], "cuda", "1x1x8", "h100_sxm_80gb.txtpb"),
        Target("h100x8x2", CHIPS["H100"], "cuda", "1x2x8", "h100_sxm_80gb.txtpb"),
        Target("h200x1", CHIPS["H200"], "cuda", "1x1x1", "h200_sxm_141gb.txtpb"),  # device checks
        Target("h200x8", CHIPS["H200"], "cuda", "1x1x8", "h200_sxm_141gb.txtpb"),
        Target("a100x8", CHIPS["A100"], "cuda", "1x1x8", "a100_sxm_80gb.txtpb"),
        Target("v4-32", CHIPS["TPU v4"], "tpu", "v4:2x2x4", chip_config="megacore"),
        Target("v5e-256", CHIPS["TPU v5e"], "tpu", "v5e:16x16"),
        Target("v5e-8", CHIPS["TPU v5e"], "tpu", "v5e:2x4"),  # 8 chips: per-chip sizing
        Target("v5p-128", CHIPS["TPU v5p"], "tpu", "v5p:4x4x4"),
        Target("v5p-8", CHIPS["TPU v5p"], "tpu", "v5p:2x2x1"),  # one host: tests
        Target("v5p-16", CHIPS["TPU v5p"], "tpu", "v5p:2x2x2"),  # v5p-128's per-chip FSDP 8
    )
}

# Without a device there is nothing to autotune on, and the Triton GEMM tiler
# fails ("Couldn't find output tile sizes"): cuBLAS GEMMs, no autotuning.
_GPU_COMPILER_OPTIONS = {"xla_gpu_enable_triton_gemm": False, "xla_gpu_autotune_level": 0}


def get(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"--target={name!r} is not a known target: use one of {sorted(TARGETS)}.")
    return TARGETS[name]


def devices(target: Target) -> list:
    """The target's devices (no hardware needed), with process indices."""
    if target.platform == "cuda":
        config = (_GPU_CONFIGS / target.gpu_config).read_text()
        topology = topologies.get_topology_desc(
            platform="cuda",
            topology_name=target.name,
            topology=target.topology,
            target_config=config,
        )
    else:
        extra = {"chip_config_name": target.chip_config} if target.chip_config else {}
        topology = topologies.get_topology_desc(
            topology_name=target.topology, platform="tpu", **extra
        )
    return list(topology.devices)


def num_hosts(devices_: list) -> int:
    return len({device.process_index for device in devices_})


def compiler_options(target: Target) -> dict:
    return dict(_GPU_COMPILER_OPTIONS) if target.platform == "cuda" else {}
