"""Ahead-of-time compilation for GPUs and TPUs on this CPU host: the tiny
224 px configs (197 tokens) compile for 8 x H100 with cuDNN's fused attention in
the program and for a 4-chip TPU v5p, for pretraining, fine-tuning and the
probe; the search for the largest batch; the parsing of compiled programs; the
one-line errors of the command."""

import json
import math
import pathlib
import subprocess
import sys

import pytest
import tiny_config

from symmim_jax import aot
from symmim_jax.train import costs, targets

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLUGINS = pathlib.Path(sys.prefix) / "aot_plugins"


def _run(args, timeout):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def compiled_cases():
    if not PLUGINS.is_dir():
        pytest.fail(f"{PLUGINS} is missing: `make test` installs requirements-aot.txt there.")
    result = _run(["tests/aot_cases.py", "h100x8", "v5p-8"], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {report["case"]: report for report in reports}


@pytest.mark.slow  # compiled_cases: six compiles, about two minutes
@pytest.mark.parametrize("kind", ["pretrain", "finetune", "probe"])
def test_h100_programs_use_cudnn_attention_at_197_tokens(compiled_cases, kind):
    report = compiled_cases[f"h100x8/{kind}"]
    assert report["devices"] == 8 and report["mesh"] == {"data": 8, "fsdp": 1}
    assert report["attention_impl"] == "cudnn" and report["attention"] == "cudnn"
    assert report["fits"] and 0 < report["memory_per_device_bytes"] < 2**30
    assert report["flops_per_step"] > 0 and report["collectives"].get("all-reduce", 0) > 0


@pytest.mark.slow  # compiled_cases: six compiles, about two minutes
@pytest.mark.parametrize("kind", ["pretrain", "finetune", "probe"])
def test_tpu_programs_compile_with_xla_attention(compiled_cases, kind):
    report = compiled_cases[f"v5p-8/{kind}"]
    assert report["devices"] == 4 and report["attention"] == "xla" and report["fits"]
    assert report["bytes_accessed"] > 0  # TPU executables carry XLA's cost analysis
    assert report["step_ms_lower_bound"] > 0 and 0 < report["mfu_upper_bound"] <= 1


@pytest.mark.slow
def test_model_flops_do_not_depend_on_the_target(compiled_cases):
    for kind in ("pretrain", "finetune", "probe"):
        gpu, tpu = compiled_cases[f"h100x8/{kind}"], compiled_cases[f"v5p-8/{kind}"]
        assert gpu["flops_per_step"] == tpu["flops_per_step"]


@pytest.mark.slow  # compiled_cases
def test_every_target_has_the_devices_its_name_counts(compiled_cases):
    """GPU names count GPUs per host (x hosts); Cloud TPU names count TensorCores
    for v4 and v5p (two per chip, one device each) and chips for v5e."""
    for name in targets.TARGETS:
        if name.startswith(("h100", "h200", "a100")):
            expected = math.prod(int(n) for n in name.split("x")[1:])
        else:
            generation, count = name.split("-")
            expected = int(count) if generation == "v5e" else int(count) // 2
        assert compiled_cases[f"topology/{name}"]["devices"] == expected, name


def test_an_unknown_target_is_one_line():
    result = _run(
        ["-m", "symmim_jax.aot", "--config=tests/tiny_config.py:pretrain,224", "--target=h100x9"],
        300,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Config error: --target='h100x9' is not a known target"), last
    assert "'h100x8'" in last and "'v5p-128'" in last  # the targets to choose from


@pytest.mark.slow  # compiled_cases
@pytest.mark.parametrize(
    "case, message",
    [
        ("error/batch", "config.batch_size=12 must be"),
        ("error/mesh", "config.mesh.data=-1 x config.mesh.fsdp=3"),
    ],
)
def test_a_batch_or_mesh_that_does_not_fit_the_target_stops_before_compiling(
    compiled_cases, case, message
):
    assert message in compiled_cases[case]["error"]


def test_find_max_batch_finds_the_largest_fitting_batch(monkeypatch):
    """Against a fake compiler whose memory is 10 GiB + 0.3 GiB per image: the
    search lands on the largest batch within the margin in a few compiles."""
    target = targets.get("h100x8")
    limit = 0.9 * target.chip.memory_bytes
    calls = []

    def fake_compile(config, target_, devices, margin):
        per_device = config.batch_size // len(devices)
        calls.append(per_device)
        memory = 10 * 2**30 + 0.3 * 2**30 * per_device
        return {"memory_per_device_bytes": memory, "fits": memory <= limit}

    monkeypatch.setattr(aot, "compile_step", fake_compile)
    config = tiny_config.get_config()
    config.grad_accum_steps = 2
    found = aot.find_max_batch(config, target, list(range(8)), 0.9)
    expected = int((limit - 10 * 2**30) / (0.3 * 2**30)) // 2 * 2
    assert found["max_batch_per_device"] == expected
    assert found["first_batch_per_device_not_fitting"] == expected + 2
    assert found["max_global_batch"] == 8 * expected
    assert len(calls) <= 5 and all(b % 2 == 0 for b in calls)


def test_find_max_batch_is_not_thrown_by_memory_flat_at_small_batches(monkeypatch):
    """ViT-L/16 with FSDP and full remat on h100x8 compiled to 31.9 GiB at 256
    per GPU and 32.2 GiB at 512: the line through those two sent the old search
    to 38760 per GPU. Against a fake compiler flat below 600 images, linear
    above, the search must still converge near the true largest batch."""
    target = targets.get("h100x8")
    limit = 0.9 * target.chip.memory_bytes
    calls = []

    def memory(per_device):
        return 2**30 * (30 + 0.001 * per_device if per_device < 600 else 0.055 * per_device)

    def fake_compile(config, target_, devices, margin):
        per_device = config.batch_size // len(devices)
        calls.append(per_device)
        return {"memory_per_device_bytes": memory(per_device), "fits": memory(per_device) <= limit}

    monkeypatch.setattr(aot, "compile_step", fake_compile)
    config = tiny_config.get_config()
    config.batch_size = 256 * 8
    found = aot.find_max_batch(config, target, list(range(8)), 0.9, resolution=0.1)
    largest = int(limit / (0.055 * 2**30))  # 1309
    assert largest * 0.9 <= found["max_batch_per_device"] <= largest
    assert found["first_batch_per_device_not_fitting"] <= largest * 1.1
    assert max(calls) <= 4 * largest and len(calls) <= 6


def test_collectives_and_attention_are_read_off_the_program():
    hlo = """
  %all-gather-start.1 = (f32[4]) all-gather-start(f32[1] %p), dimensions={0}
  %all-gather-done.1 = f32[4] all-gather-done(%all-gather-start.1)
  %ar = f32[8] all-reduce(f32[8] %x), to_apply=%add
  %rs.2 = f32[2] reduce-scatter(f32[8] %y), dimensions={0}
  %name-with-all-reduce = f32[8] add(%ar, %ar)
  %f = (bf16[8,197,12,64]) custom-call(%q, %k, %v), custom_call_target="__cudnn$fmhaSoftmax"
"""
    assert costs.collectives(hlo) == {"all-gather": 1, "all-reduce": 1, "reduce-scatter": 1}
    assert costs.attention_kernel(hlo) == "cudnn"
    assert costs.attention_kernel(hlo.replace("__cudnn$fmha", "__other")) == "xla"


def test_roofline_takes_the_slower_of_compute_and_memory():
    chip = targets.CHIPS["H100"]
    compute = costs.roofline(chip.peak_flops * 0.01, chip.memory_bandwidth * 0.001, chip)
    assert compute["bound_by"] == "compute" and compute["step_ms_lower_bound"] == 10.0
    assert compute["mfu_upper_bound"] == 1.0
    memory = costs.roofline(chip.peak_flops * 0.01, chip.memory_bandwidth * 0.02, chip)
    assert memory["bound_by"] == "memory" and memory["step_ms_lower_bound"] == 20.0
    assert memory["mfu_upper_bound"] == 0.5
