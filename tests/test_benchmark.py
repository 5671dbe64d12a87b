"""Benchmark pieces: the chip table lookup and the model-FLOP count."""

import pytest
import tiny_config

from symmim_jax import benchmark
from symmim_jax.train import costs, targets


@pytest.mark.parametrize(
    "kind, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("TPU v4", 275.0),
        ("TPU v5 lite", 197.0),
        ("TPU v5p", 459.0),
        ("cpu", None),
    ],
)
def test_chip_of_device_kind(kind, peak):
    chip = targets.chip_of_device_kind(kind)
    assert (chip and chip.peak_flops / 1e12) == peak


def _flops(**overrides):
    config = tiny_config.get_config()
    config.update_from_flattened_dict(overrides)
    return costs.model_flops(config, benchmark.build)


def test_model_flops_ignore_remat_and_accumulation_and_scale_with_the_batch():
    plain = _flops()
    assert plain > 0
    assert _flops(**{"model.remat": "full", "grad_accum_steps": 2}) == plain
    # The whole mesh's FLOPs: twice the batch is about twice the work (the
    # optimizer and EMA part does not grow).
    assert 1.8 < _flops(batch_size=16) / plain < 2.0
