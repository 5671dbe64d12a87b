"""Mesh sizes, FSDP sharding rules, and a checkpoint restored onto another mesh."""

import shutil

import jax
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import optax
import pytest
import tiny_config

from symmim_jax import methods, pretrain
from symmim_jax.train import checkpoint, optim, run, sharding


def _mesh_config(data, fsdp):
    return ml_collections.ConfigDict(dict(data=data, fsdp=fsdp, fsdp_min_size=0))


@pytest.mark.parametrize(
    "data, fsdp, expected",
    [(-1, 1, (8, 1)), (-1, 2, (4, 2)), (2, -1, (2, 4)), (8, 1, (8, 1)), (1, 8, (1, 8))],
)
def test_mesh_shape_fills_minus_one_with_the_rest(data, fsdp, expected):
    assert sharding.mesh_shape(_mesh_config(data, fsdp), 8) == expected
    mesh = sharding.make_mesh(_mesh_config(data, fsdp))
    assert (mesh.shape["data"], mesh.shape["fsdp"]) == expected


@pytest.mark.parametrize(
    "data, fsdp, message",
    [
        (3, -1, "does not divide the 8 devices"),
        (2, 2, "set one of them to -1"),
        (-1, -1, "at most one -1"),
        (0, 8, "positive size"),
    ],
)
def test_mesh_that_does_not_match_the_devices_names_the_fields(data, fsdp, message):
    config = tiny_config.get_config()
    config.mesh.data, config.mesh.fsdp = data, fsdp
    with pytest.raises(ValueError, match=message):
        run.check_config(config, num_devices=8, num_processes=1)


def test_batch_must_split_over_devices_and_micro_batches():
    config = tiny_config.get_config()  # batch 8
    config.grad_accum_steps = 2
    with pytest.raises(ValueError, match="grad_accum_steps=2.*batch_size=16"):
        run.check_config(config, num_devices=8, num_processes=1)
    run.check_config(config, num_devices=4, num_processes=1)


@pytest.mark.parametrize(
    "shape, fsdp, min_size, spec",
    [
        ((768, 3072), 4, 0, P(None, "fsdp")),  # the largest axis
        ((3, 768, 6), 4, 0, P(None, "fsdp", None)),
        ((6, 10), 4, 0, P()),  # no axis divisible: replicated
        ((10, 12), 4, 0, P(None, "fsdp")),  # the largest divisible one
        ((768,), 4, 1024, P()),  # small: replicated
        ((768, 768), 1, 0, P()),  # no fsdp axis: data parallel
        ((), 4, 0, P()),  # scalars
    ],
)
def test_param_spec(shape, fsdp, min_size, spec):
    assert sharding.param_spec(shape, fsdp, min_size) == spec


def test_optimizer_state_and_ema_target_follow_the_parameters():
    config = tiny_config.get_config()
    config.mesh.fsdp, config.mesh.fsdp_min_size = 4, 256
    mesh = sharding.make_mesh(config.mesh)
    method = methods.build(config, 10)
    tx, _ = optim.make_adamw(config.optim, config.batch_size, 10, 1)
    _, abstract = run.abstract_state(config, method, tx, mesh)
    shardings = run.shardings_of(abstract)
    params = shardings.params
    split = [s.spec for s in jax.tree.leaves(params) if s.spec != P()]
    assert split and all("fsdp" in spec for spec in split)
    for moment in ("mu", "nu"):
        assert optax.tree_utils.tree_get(shardings.opt_state, moment) == params
    for name, subtree in shardings.target_params.items():
        assert subtree == params[name]
    assert shardings.step.spec == P()
    # Every leaf over 256 elements with an axis divisible by 4 is split.
    for leaf, s in zip(jax.tree.leaves(abstract.params), jax.tree.leaves(params)):
        assert (s.spec != P()) == (leaf.size >= 256 and any(d % 4 == 0 for d in leaf.shape))


def _params(workdir):
    return [
        np.concatenate(
            [
                leaf.ravel()
                for leaf in jax.tree.leaves(
                    checkpoint.load_params(str(workdir), subtree=subtree)[0]
                )
            ]
        )
        for subtree in ("params", "target_params")
    ]


@pytest.mark.slow
def test_checkpoint_of_8_device_dp_resumes_on_4_device_fsdp(tmp_path):
    config = tiny_config.get_config()
    config.update_from_flattened_dict(
        {
            "dataset.name": "synthetic",
            "total_steps": 2,
            "log_every": 1,
            "checkpoint_every": 2,
            "visualize_every": 0,
        }
    )
    pretrain.train(config, str(tmp_path / "dp"))  # 8 devices, data parallel
    shutil.copytree(tmp_path / "dp", tmp_path / "fsdp")
    config.total_steps = 4
    pretrain.train(config, str(tmp_path / "dp"))  # the reference goes on as it was
    config.mesh.fsdp, config.mesh.fsdp_min_size = 2, 0
    pretrain.train(config, str(tmp_path / "fsdp"), devices=jax.devices()[:4])
    assert checkpoint.latest_or(str(tmp_path / "fsdp"), None) == 4
    dp, fsdp = (np.concatenate(_params(tmp_path / name)) for name in ("dp", "fsdp"))
    diffs = np.abs(dp - fsdp)
    # Reductions run in another order on the other mesh; see test_distributed.
    assert diffs.max() <= 2 * optim.peak_learning_rate(config.optim, config.batch_size)
    assert np.mean(diffs > 1e-6) < 0.01


def test_activations_stay_split_over_the_batch_next_to_fsdp_split_weights():
    """x @ w with w split over fsdp along its output features: XLA may split
    the product along the features and keep the whole batch on every device;
    on_batch_axes (on the step's mesh) pins it to the batch, and is a no-op
    outside a mesh."""
    mesh = sharding.make_mesh(_mesh_config(2, 4))
    x = jax.device_put(np.ones((8, 16), np.float32), sharding.batch_sharding(mesh))
    w = jax.device_put(np.ones((16, 32), np.float32), jax.NamedSharding(mesh, P(None, "fsdp")))

    def product(x, w, pin):
        y = x @ w  # [B, F]
        if not pin:
            return y
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return sharding.on_batch_axes(y)

    free = jax.jit(product, static_argnums=2)(x, w, False)
    pinned = jax.jit(product, static_argnums=2)(x, w, True)
    assert free.sharding.spec != P(sharding.BATCH_AXES)  # what the pin is for
    assert pinned.sharding.spec == P(sharding.BATCH_AXES)
    np.testing.assert_array_equal(free, pinned)
    assert sharding.on_batch_axes(x) is x
