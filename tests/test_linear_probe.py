"""Linear probe: the demo config end to end (fast path and per-step encoding),
the batches of extracted features."""

import json
import os

from fake_fashion_mnist import write_fake_set
from fake_pretraining import encoder_params, write_workdir
import jax
import numpy as np
import tiny_config

from symmim_jax import linear_probe
from symmim_jax.train import checkpoint, optim


def test_feature_batches_cover_each_epoch_and_resume_exactly():
    feats = np.arange(10, dtype=np.float32)[:, None]
    labels = np.arange(10)
    straight = linear_probe.feature_batches(feats, labels, 3, seed=0, start_step=0)
    first = [next(straight)["label"] for _ in range(6)]  # 3 per epoch: 2 epochs
    assert len(set(np.concatenate(first[:3]))) == 9
    assert not np.array_equal(np.concatenate(first[:3]), np.concatenate(first[3:]))
    resumed = linear_probe.feature_batches(feats, labels, 3, seed=0, start_step=4)
    np.testing.assert_array_equal(next(resumed)["label"], first[4])


def test_demo_config_end_to_end(tmp_path):
    (tmp_path / "src").mkdir()
    write_fake_set(tmp_path / "src", num_train=64, num_test=12)
    config = tiny_config.linear_probe()
    config.dataset.manual_dir = str(tmp_path / "src")
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.init_from = write_workdir(tmp_path / "pre", encoder_params("mu/4", 16))
    config.total_steps = 3
    config.log_every = 1
    config.eval_every = 3
    workdir = str(tmp_path / "lp")
    linear_probe.train(config, workdir)
    with open(os.path.join(workdir, "results.json")) as f:
        fast = json.load(f)
    assert fast["steps"] == 3 and fast["init_step"] == 7 and fast["block"] == 2
    assert 0 <= fast["top1"] <= fast["top5"] <= 1

    # Per-step encoding with augmentation, mean-pooled block-1 features.
    config.probe.augment, config.probe.pool, config.probe.block = True, "mean", 1
    linear_probe.train(config, str(tmp_path / "lp_aug"))
    with open(os.path.join(tmp_path / "lp_aug", "results.json")) as f:
        slow = json.load(f)
    assert slow["block"] == 1 and slow["pool"] == "mean"


def test_fsdp_and_accumulation_on_8_devices_equal_one_device(tmp_path, capsys):
    """Per-step encoding with the frozen encoder split over 2 fsdp shards, 2
    micro-batches (BatchNorm statistics per micro-batch either way): the run
    of 8 devices is the run of one."""
    (tmp_path / "src").mkdir()
    write_fake_set(tmp_path / "src", num_train=64, num_test=12)
    config = tiny_config.linear_probe()
    config.update_from_flattened_dict(
        {
            "dataset.manual_dir": str(tmp_path / "src"),
            "dataset.data_dir": str(tmp_path / "tfds"),
            "probe.augment": True,
            "batch_size": 16,
            "grad_accum_steps": 2,
            "total_steps": 2,
            "eval_every": 2,
            "mesh.fsdp_min_size": 0,
        }
    )
    config.init_from = write_workdir(tmp_path / "pre", encoder_params("mu/4", 16))
    linear_probe.train(config, str(tmp_path / "one"), devices=jax.devices()[:1])
    config.mesh.fsdp = 2
    linear_probe.train(config, str(tmp_path / "eight"))
    assert "on 8 devices (mesh data=4 x fsdp=2" in capsys.readouterr().out
    lr = optim.peak_learning_rate(config.optim, config.batch_size)
    states = [
        checkpoint.load_params(str(tmp_path / name), subtree=subtree)[0]
        for subtree in ("params", "method_state")
        for name in ("one", "eight")
    ]
    for a, b in zip(jax.tree.leaves(states[:2][0]), jax.tree.leaves(states[:2][1])):
        np.testing.assert_allclose(a, b, atol=2 * lr)  # LARS's first steps (test_step)
    for a, b in zip(jax.tree.leaves(states[2]), jax.tree.leaves(states[3])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # BatchNorm statistics
