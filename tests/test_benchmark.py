"""Benchmark pieces: the peak table and the model-FLOP count."""

import jax
import jax.numpy as jnp
import pytest
import tiny_config

from symmim_jax import benchmark, methods
from symmim_jax.train import optim, run, sharding


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
def test_peak_tflops(kind, peak):
    assert benchmark.peak_tflops(kind) == peak


def _flops(**overrides):
    config = tiny_config.get_config()
    config.update_from_flattened_dict(overrides)
    mesh = sharding.make_mesh(config.mesh)
    method = methods.build(config, 10)
    tx, schedule = optim.make_adamw(config.optim, config.batch_size, 10, 1)
    _, abstract = run.abstract_state(config, method, tx, mesh)
    shardings = run.shardings_of(abstract)
    batch = {"image": jax.ShapeDtypeStruct((config.batch_size, 16, 16, 3), jnp.uint8)}
    return benchmark.model_flops(
        config, tx, schedule, mesh, shardings, abstract, batch, jax.random.key(0)
    )


def test_model_flops_ignore_remat_and_accumulation_and_scale_with_the_batch():
    plain = _flops()
    assert plain > 0
    assert _flops(**{"model.remat": "full", "grad_accum_steps": 2}) == plain
    # The whole mesh's FLOPs: twice the batch is about twice the work (the
    # optimizer and EMA part does not grow).
    assert 1.8 < _flops(batch_size=16) / plain < 2.0
