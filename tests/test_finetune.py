"""Fine-tuning: the loss falls on a fixed batch, the demo config runs end to
end from a pretraining workdir, resumes, and refuses a wrong encoder."""

import functools
import json
import os

from fake_fashion_mnist import write_fake_set
from fake_pretraining import encoder_params, write_workdir
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import tiny_config

from symmim_jax import finetune
from symmim_jax.train import checkpoint, loop, optim, run
from symmim_jax.train.step import init_state, train_step


@pytest.fixture(scope="module")
def fake_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_fake_set(root, num_train=64, num_test=12)
    return root


def small_config(fake_source, data_dir):
    config = tiny_config.finetune()
    config.dataset.manual_dir = str(fake_source)
    config.dataset.data_dir = str(data_dir)
    config.dataset.shuffle_buffer = 64
    config.log_every = 1
    config.checkpoint_every = 2
    config.eval_every = 2
    return config


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    config = tiny_config.finetune()
    config.finetune.mixup_alpha = config.finetune.cutmix_alpha = 0.0
    method = finetune.FineTune(config, num_classes=4)
    tx = optax.adamw(3e-3)  # constant lr; the layer-decay chain is tested in test_optim
    schedule = optax.constant_schedule(3e-3)
    state = init_state(method, tx, jax.random.key(0), (1, 16, 16, 3))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (8, 16, 16, 3), np.uint8),
        "label": rng.integers(0, 4, 8),
    }
    step = jax.jit(
        functools.partial(
            train_step,
            objective=method,
            tx=tx,
            lr_schedule=schedule,
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
        )
    )
    losses = []
    for _ in range(6):
        state, metrics = step(state, batch, jax.random.key(1))
        losses.append(float(metrics["loss"]))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 0.1, losses


def test_the_loss_erases_the_boxes_of_the_batch():
    """A box over the whole image replaces it by noise (another loss); an empty
    box changes nothing; both before mixup, in normalized units."""
    config = tiny_config.finetune()
    config.finetune.mixup_alpha = config.finetune.cutmix_alpha = 0.0
    method = finetune.FineTune(config, num_classes=4)
    params, _, _ = method.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(2, 16, 16, 3)).astype(np.float32), "label": np.arange(2)}

    def loss(**extra):
        out = method.loss(
            params, {**batch, **extra}, jax.random.key(3), target_params={}, method_state={}
        )
        return float(out.loss)

    empty = np.zeros((2, 4), np.int32)
    whole = np.tile(np.array([[0, 0, 16, 16]], np.int32), (2, 1))
    assert loss(erase_box=empty) == loss()
    assert loss(erase_box=whole) != loss()


def test_the_step_takes_the_erase_boxes_its_input_spec_declares():
    """With erasing on, the task's batch has "erase_box" and its step traces on it."""
    config = tiny_config.finetune()
    config.augment.reprob = 0.25
    task = finetune.FineTuning(config)
    objective, tx, schedule = task.build(run.RunLength(1, 10, 1), run.DataFacts(64, 4))
    spec = task.input_spec(8)
    assert spec["erase_box"].shape == (8, 4)
    init = functools.partial(init_state, objective, tx, image_shape=(1, 16, 16, 3))
    state = jax.eval_shape(init, jax.random.key(0))
    step = functools.partial(
        train_step,
        objective=objective,
        tx=tx,
        lr_schedule=schedule,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    _, metrics = jax.eval_shape(step, state, spec, jax.random.key(1))
    assert metrics["loss"].shape == ()


@pytest.mark.slow
def test_demo_config_end_to_end_from_a_pretraining_workdir(fake_source, tmp_path):
    saved = encoder_params("mu/4", 16, seed=5)
    config = small_config(fake_source, tmp_path / "tfds")
    config.init_from = write_workdir(tmp_path / "pre", saved)
    config.total_steps = 2
    config.finetune.ema_decay = 0.9
    workdir = str(tmp_path / "ft")
    finetune.train(config, workdir)

    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    assert results["init_from"] == config.init_from and results["init_step"] == 7
    assert results["steps"] == 2 and 0 <= results["top1"] <= results["top5"] <= 1
    assert {"ema_top1", "best_top1", "best_step"} <= set(results)
    # The best checkpoint has the exporter's layout; the final norm is gone.
    best = ocp.PyTreeCheckpointer().restore(
        os.path.join(workdir, "best", "checkpoints", "2", "state")
    )["params"]
    assert set(best) == {"encoder", "fc_norm", "head"} and "norm" not in best["encoder"]

    # Resume: a longer run continues from step 2, keeping the encoder's origin.
    config.total_steps = 4
    finetune.train(config, workdir)
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["steps"] == 4
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [1, 2, 3, 4]


def test_step_zero_holds_the_pretrained_encoder(fake_source, tmp_path, monkeypatch):
    saved = encoder_params("mu/4", 16, seed=5)
    config = small_config(fake_source, tmp_path / "tfds")
    config.init_from = write_workdir(tmp_path / "pre", saved)
    seen = {}

    def capture(config, workdir, length, manager, state, *args, **kwargs):
        seen["encoder"] = jax.device_get(state.params["encoder"])

    monkeypatch.setattr(loop, "run", capture)
    finetune.train(config, str(tmp_path / "ft"))
    trimmed = {k: v for k, v in saved.items() if k != "norm"}
    for a, b in zip(jax.tree.leaves(seen["encoder"]), jax.tree.leaves(trimmed)):
        np.testing.assert_array_equal(a, b)


def test_wrong_encoder_size_stops_before_the_workdir(fake_source, tmp_path):
    config = small_config(fake_source, tmp_path / "tfds")
    config.init_from = write_workdir(tmp_path / "pre", encoder_params("mu/8", 16))
    with pytest.raises(run.ConfigError, match="patch 8.*patch 4"):
        finetune.train(config, str(tmp_path / "ft"))
    assert not os.path.exists(tmp_path / "ft")


@pytest.mark.slow
def test_fsdp_and_accumulation_on_8_devices_equal_one_device(fake_source, tmp_path, capsys):
    """config.mesh and grad_accum_steps are honoured: parameters split over 2
    fsdp shards x 4 data shards, 2 micro-batches, give the run of one device."""
    config = small_config(fake_source, tmp_path / "tfds")
    config.update_from_flattened_dict(
        {
            "batch_size": 16,
            "grad_accum_steps": 2,
            "total_steps": 2,
            "eval_every": 2,
            "finetune.mixup_prob": 0.0,
            "model.drop_path": 0.0,
        }
    )
    finetune.train(config, str(tmp_path / "one"), devices=jax.devices()[:1])
    config.mesh.fsdp, config.mesh.fsdp_min_size = 2, 0
    finetune.train(config, str(tmp_path / "eight"))
    assert "on 8 devices (mesh data=4 x fsdp=2" in capsys.readouterr().out
    one, eight = (checkpoint.load_params(str(tmp_path / name))[0] for name in ("one", "eight"))
    lr = optim.peak_learning_rate(config.optim, config.batch_size)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight)):
        # Adam's first steps are +-lr where a gradient is float noise (test_step).
        np.testing.assert_allclose(a, b, atol=2 * lr)
    results = [
        json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "eight")
    ]
    assert abs(results[0]["top1"] - results[1]["top1"]) <= 1 / 12
