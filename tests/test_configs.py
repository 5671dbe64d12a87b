"""Every preset loads and validates; the ImageNet presets run one real step at 224 px."""
import functools
import importlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from symmim_jax import data, methods, optim, sharding, validation
from symmim_jax.train_step import init_state, train_step

PRESETS = ("symmim_vit_s16", "symmim_vit_b16", "symmim_vit_l16")
BASELINES = ("simmim_vit_b16", "mae_vit_b16", "ccmim_vit_b16", "mixmim_vit_b16")


def load(name):
    return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", PRESETS + BASELINES + ("demo",))
def test_preset_validates_on_8_devices(name):
    validation.validate(load(name), num_devices=8)


@pytest.mark.parametrize("method", ["simmim", "mae", "ccmim", "mixmim"])
def test_demo_switches_method_by_one_field(method):
    config = load("demo")
    config.method = method
    validation.validate(config, num_devices=8)
    assert type(methods.build(config, 10)).__module__ == f"symmim_jax.methods.{method}"


def test_presets_follow_the_paper():
    s, b, l = (load(name) for name in PRESETS)
    assert (s.model.variant, s.epochs) == ("S/16", 300)
    assert (b.model.variant, b.epochs) == ("B/16", 800)
    assert (l.model.variant, l.epochs) == ("L/16", 1600)
    for config in (s, b, l):
        assert config.input.image_size == 224 and config.dataset.name == "imagenet2012"
        assert (config.symmim.online_cell_size, config.symmim.target_cell_size) == (16, 32)
        assert config.symmim.projector_hidden_dim == 4096
        assert config.optim.base_lr == 8e-4 and config.optim.base_batch_size == 2048
        assert config.optim.weight_decay == 0.05 and config.optim.grad_clip_norm == 5.0


def test_baselines_follow_their_papers():
    simmim, mae, ccmim, mixmim = (load(name) for name in BASELINES)
    assert [c.method for c in (simmim, mae, ccmim, mixmim)] == [
        "simmim", "mae", "ccmim", "mixmim"]
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


@pytest.mark.parametrize("name", PRESETS + BASELINES)
def test_preset_runs_one_step_at_224(name, tmp_path):
    config = load(name)
    config.batch_size = 2
    config.dataset.data_dir = str(tmp_path)
    validation.validate(config, num_devices=1)
    # One device: replicating ViT-L's state over 8 fake devices would need 8 copies.
    mesh = sharding.data_mesh(jax.devices()[:1])
    with tfds.testing.mock_data(num_examples=4):
        batch = next(data.make_pretrain_iterator(config, process_index=0, process_count=1))
    assert batch["image"].shape == (2, 224, 224, 3) and batch["image"].dtype == np.uint8
    method = methods.build(config, total_steps=100)
    tx, schedule = optim.make_optimizer(config.optim, config.batch_size, 100, 10)
    init = functools.partial(init_state, method, tx, image_shape=(1, 224, 224, 3))
    state = jax.jit(init)(jax.random.key(0))
    step = jax.jit(functools.partial(train_step, method=method, tx=tx,
                                     lr_schedule=schedule, mean=config.input.mean,
                                     std=config.input.std), donate_argnums=0)
    state, metrics = step(state, sharding.global_batch(batch, mesh), jax.random.key(1))
    assert int(state.step) == 1
    for name_, value in jax.device_get(metrics).items():
        assert np.isfinite(value), name_
    if config.method == "symmim":
        # Cross-entropy over N = 196 patches starts near log(196).
        assert 3.0 < float(metrics["loss_con"]) < 8.0


FINETUNE_PRESETS = ("finetune_vit_s16", "finetune_vit_b16", "finetune_vit_l16",
                    "demo_finetune")


@pytest.mark.parametrize("name", FINETUNE_PRESETS)
def test_finetune_preset_validates(name):
    config = load(name)
    validation.validate(config, num_devices=8, pretraining=False)
    validation.validate_finetune(config)


def test_finetune_presets_follow_the_paper():
    """METHOD §5: epochs, warm-up and layer decay per size; BEiT's recipe."""
    table = {"finetune_vit_s16": ("S/16", 200, 5, 0.8),
             "finetune_vit_b16": ("B/16", 100, 20, 0.65),
             "finetune_vit_l16": ("L/16", 50, 5, 0.75)}
    for name, expected in table.items():
        c = load(name)
        assert (c.model.variant, c.epochs, c.warmup_epochs, c.optim.layer_decay) == expected
        assert (c.finetune.mixup_alpha, c.finetune.cutmix_alpha) == (0.8, 1.0)
        assert (c.finetune.label_smoothing, c.augment.reprob) == (0.1, 0.25)
        assert c.optim.base_lr * 2048 / c.optim.base_batch_size == 5e-3
        assert c.model.drop_path == 0.1 and c.optim.weight_decay == 0.05


@pytest.mark.parametrize("name", ("linear_probe", "demo_linear_probe"))
def test_linear_probe_preset_validates(name):
    config = load(name)
    validation.validate(config, num_devices=8, pretraining=False)
    validation.validate_probe(config, depth=12)
    assert config.optim.base_batch_size == 256
    if name == "linear_probe":  # MAE; the demo's short run needs MAE's peak lr
        assert config.optim.base_lr == 0.1 and config.epochs == 90
