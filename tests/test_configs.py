"""Every preset loads and passes the checks; the ImageNet presets trace their
step at 224 px (a real 224 px step runs in tests/test_device_check.py, and
compiles for GPUs and TPUs in tests/test_aot.py); config files load from any
directory through the flag."""

import functools
import importlib
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from symmim_jax import finetune, linear_probe, methods, pretrain
from symmim_jax.configs import common
from symmim_jax.data import pipeline
from symmim_jax.train import optim, run, sharding
from symmim_jax.train.step import init_state, step_function

SIZES = ("S/16", "B/16", "L/16")
BASELINES = ("simmim", "mae", "ccmim", "mixmim")


def load(name, arg=None):
    module = importlib.import_module(f"symmim_jax.configs.{name}")
    return module.get_config() if arg is None else module.get_config(arg)


def check(task_class, config, num_devices=8):
    run.check(task_class(config), num_devices, num_processes=1)


@pytest.mark.parametrize(
    "name, arg",
    [("symmim", size) for size in SIZES]
    + [(name, "B/16") for name in BASELINES]
    + [("demo", None)],
)
def test_pretraining_preset_passes_the_checks_on_8_devices(name, arg):
    check(pretrain.Pretraining, load(name, arg))


@pytest.mark.parametrize("method", BASELINES)
def test_demo_switches_method_by_one_field(method):
    config = load("demo")
    config.method = method
    check(pretrain.Pretraining, config)
    assert type(methods.build(config, 10)).__module__ == f"symmim_jax.methods.{method}"


def test_an_unknown_size_is_one_clear_error():
    with pytest.raises(ValueError, match=r"config size 'B/14': use one of \['B/16'"):
        load("symmim", "B/14")
    assert common.size_arg(None, "B/16", SIZES) == "B/16"


def test_symmim_sizes_follow_the_paper():
    small, base, large = (load("symmim", size) for size in SIZES)
    assert (small.model.variant, small.epochs, small.warmup_epochs) == ("S/16", 300, 10)
    assert (base.model.variant, base.epochs, base.warmup_epochs) == ("B/16", 800, 20)
    assert (large.model.variant, large.epochs, large.warmup_epochs) == ("L/16", 1600, 20)
    for config in (small, base, large):
        assert config.input.image_size == 224 and config.dataset.name == "imagenet2012"
        assert (config.symmim.online_cell_size, config.symmim.target_cell_size) == (16, 32)
        assert config.symmim.projector_hidden_dim == 4096
        assert config.optim.base_lr == 8e-4 and config.optim.base_batch_size == 2048
        assert config.optim.weight_decay == 0.05 and config.optim.grad_clip_norm == 5.0


def test_baselines_follow_their_papers():
    simmim, mae, ccmim, mixmim = (load(name) for name in BASELINES)
    assert [c.method for c in (simmim, mae, ccmim, mixmim)] == list(BASELINES)
    assert (simmim.epochs, simmim.batch_size, simmim.optim.base_lr) == (800, 2048, 8e-4)
    assert (simmim.simmim.mask_cell_size, simmim.simmim.mask_ratio) == (32, 0.6)
    assert (mae.epochs, mae.batch_size, mae.mae.mask_ratio) == (1600, 4096, 0.75)
    assert (mae.mae.decoder_width, mae.mae.decoder_depth) == (512, 8)
    assert (ccmim.epochs, ccmim.batch_size, ccmim.ccmim.weight_nce) == (800, 1024, 0.2)
    assert (mixmim.epochs, mixmim.batch_size) == (300, 1024)
    assert (mixmim.mixmim.mask_cell_size, mixmim.mixmim.mask_ratio) == (32, 0.5)
    for config in (mae, ccmim, mixmim):
        assert (config.optim.base_lr, config.optim.base_batch_size) == (1.5e-4, 256)
        assert (config.optim.b2, config.warmup_epochs) == (0.95, 40.0)
    for config in (simmim, mae, ccmim, mixmim):
        assert config.model.variant == "B/16" and config.optim.weight_decay == 0.05


def test_method_sections_are_the_classes_defaults():
    config = load("symmim")
    for name, method in methods.METHODS.items():
        assert config[name].to_dict() == ml_collections.ConfigDict(method.defaults).to_dict()


def _preset_step(config, tmp_path):
    """The preset's input batch at batch size 2 from mock data, its initial
    state function and its train step function (one device)."""
    config.batch_size = 2
    config.dataset.data_dir = str(tmp_path)
    check(pretrain.Pretraining, config, num_devices=1)
    mesh = sharding.make_mesh(None, jax.devices()[:1])
    with tfds.testing.mock_data(num_examples=4):
        batch = next(pipeline.make_train_iterator(config, process_index=0, process_count=1))
    assert batch["image"].shape == (2, 224, 224, 3) and batch["image"].dtype == np.uint8
    method = methods.build(config, total_steps=100)
    tx, schedule = optim.make_adamw(config.optim, config.batch_size, 100, 10)
    init = functools.partial(init_state, method, tx, image_shape=(1, 224, 224, 3))
    step = step_function(config, method, tx, schedule)
    return sharding.global_batch(batch, mesh), init, step


@pytest.mark.parametrize(
    "name, arg", [("symmim", size) for size in SIZES] + [(name, "B/16") for name in BASELINES]
)
def test_preset_step_traces_at_224(name, arg, tmp_path):
    """The real model at its real size, traced (not compiled: a ViT-L step
    takes minutes to compile on 2 cores)."""
    batch, init, step = _preset_step(load(name, arg), tmp_path)
    state = jax.eval_shape(init, jax.random.key(0))
    new_state, metrics = jax.eval_shape(step, state, batch, jax.random.key(1))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), new_state.params) == jax.tree.map(
        lambda x: (x.shape, x.dtype), state.params
    )
    assert metrics and all(value.shape == () for value in metrics.values())


@pytest.mark.parametrize(
    "name, arg", [("finetune", size) for size in SIZES] + [("demo_finetune", None)]
)
def test_finetune_preset_passes_the_checks(name, arg):
    check(finetune.FineTuning, load(name, arg))


def test_finetune_sizes_follow_the_paper():
    """docs/METHOD.md §5: epochs, warm-up and layer decay per size; BEiT's recipe."""
    table = {"S/16": (200, 5, 0.8), "B/16": (100, 20, 0.65), "L/16": (50, 5, 0.75)}
    for size, expected in table.items():
        c = load("finetune", size)
        assert (c.model.variant, c.epochs, c.warmup_epochs, c.optim.layer_decay) == (
            size,
            *expected,
        )
        assert (c.finetune.mixup_alpha, c.finetune.cutmix_alpha) == (0.8, 1.0)
        assert (c.finetune.label_smoothing, c.augment.reprob) == (0.1, 0.25)
        assert c.optim.base_lr * 2048 / c.optim.base_batch_size == 5e-3
        assert c.model.drop_path == 0.1 and c.optim.weight_decay == 0.05


@pytest.mark.parametrize("name, arg", [("linear_probe", "B/16"), ("demo_linear_probe", None)])
def test_linear_probe_preset_passes_the_checks(name, arg):
    config = load(name, arg)
    check(linear_probe.LinearProbing, config)
    assert config.optim.base_batch_size == 256
    if name == "linear_probe":  # MAE; the demo's short run needs MAE's peak lr
        assert config.optim.base_lr == 0.1 and config.epochs == 90


def test_evaluation_configs_hold_no_pretraining_sections():
    for config in (load("finetune"), load("linear_probe")):
        assert not {"method", "knn", "visualize_every", *methods.METHODS} & set(config)


def test_a_preset_loads_through_the_flag_from_any_directory(tmp_path):
    """--config=/abs/path/FILE.py:ARG from outside the repository."""
    path = os.path.join(os.path.dirname(pipeline.__file__), "..", "configs", "symmim.py")
    code = (
        "from absl import flags; from ml_collections import config_flags; "
        "import sys; config_flags.DEFINE_config_file('config'); "
        "flags.FLAGS(sys.argv); c = flags.FLAGS.config; "
        "print(c.model.variant, c.epochs, c.batch_size)"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            f"--config={os.path.abspath(path)}:L/16",
            "--config.batch_size=64",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.stdout.split() == ["L/16", "1600", "64"], result.stderr[-2000:]
