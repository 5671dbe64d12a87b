"""End to end: pretraining CLI logic, checkpoints, resume, finished runs, bad starts."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys

from fake_fashion_mnist import write_fake_set
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf
import tiny_config

from symmim_jax import pretrain
from symmim_jax.configs import demo
from symmim_jax.data import pipeline
from symmim_jax.train import provenance, run
from symmim_jax.train import workdir as workdir_lib


@pytest.fixture(scope="module")
def fake_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_fake_set(root, num_train=64, num_test=8)
    return root


def small_config(fake_source, data_dir):
    config = tiny_config.get_config()  # batch 8: 8 steps per epoch of 64 images
    config.dataset.manual_dir = str(fake_source)
    config.dataset.data_dir = str(data_dir)
    config.dataset.shuffle_buffer = 64
    config.log_every = 2
    config.checkpoint_every = 2
    config.keep_checkpoints = 2
    config.visualize_every = 4
    return config


@pytest.fixture
def config(fake_source, tmp_path_factory):
    return small_config(fake_source, tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def finished_run(fake_source, tmp_path_factory):
    """A workdir holding a finished 2-step run; tests copy it."""
    config = small_config(fake_source, tmp_path_factory.mktemp("tfds"))
    config.total_steps = 2
    workdir = tmp_path_factory.mktemp("finished") / "run"
    pretrain.train(config, str(workdir))
    return config, workdir


def saved_steps(workdir):
    return sorted(
        int(name) for name in os.listdir(os.path.join(workdir, "checkpoints")) if name.isdigit()
    )


def saved_params(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    restored = ocp.PyTreeCheckpointer().restore(path)
    return restored["params"], restored["target_params"], restored["method_state"]


def metric_lines(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def snapshot(workdir):
    """Every file under workdir with its size and modification time, but the
    lock file, which names each run that took it."""
    return {
        os.path.join(root, name): (
            os.path.getsize(os.path.join(root, name)),
            os.path.getmtime(os.path.join(root, name)),
        )
        for root, _, names in os.walk(workdir)
        for name in names
        if name != workdir_lib.LOCK_FILE
    }


def crash_after(num_batches):
    """A make_train_iterator whose input dies after `num_batches` batches."""
    make = pipeline.make_train_iterator

    def make_crashing(*args, **kwargs):
        batches = make(*args, **kwargs)
        for _ in range(num_batches):
            yield next(batches)
        raise RuntimeError("simulated crash")

    return make_crashing


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(config, tmp_path, capsys, monkeypatch):
    config.total_steps = 10  # crosses the epoch boundary at step 8
    straight = str(tmp_path / "straight")
    pretrain.train(config, straight)

    resumed = str(tmp_path / "resumed")
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "make_train_iterator", crash_after(7))
        with pytest.raises(RuntimeError, match="simulated crash"):
            pretrain.train(config, resumed)
    assert saved_steps(resumed) == [4, 6]
    pretrain.train(config, resumed)
    assert saved_steps(resumed) == [8, 10]
    assert [line["step"] for line in metric_lines(resumed)] == [2, 4, 6, 8, 10]
    for line in metric_lines(resumed):
        assert {
            "train/loss",
            "train/loss_rec1",
            "train/loss_rec2",
            "train/loss_con",
            "train/lr",
            "train/momentum",
            "train/grad_norm",
            "perf/images_per_sec",
        } <= set(line)

    # The heads' BatchNorm running statistics are saved and resumed too.
    assert set(saved_params(resumed, 10)[2]) == {"online", "target"}
    for a, b in zip(
        jax.tree.leaves(saved_params(straight, 10)), jax.tree.leaves(saved_params(resumed, 10))
    ):
        np.testing.assert_array_equal(a, b)
    assert metric_lines(straight)[-1]["train/loss"] == metric_lines(resumed)[-1]["train/loss"]
    tags = {}
    for name in os.listdir(os.path.join(resumed, "tensorboard")):
        for event in tf.compat.v1.train.summary_iterator(
            os.path.join(resumed, "tensorboard", name)
        ):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert sorted(tags["train/loss_con"]) == [2, 4, 6, 8, 10]
    assert sorted(tags["train/reconstruction"]) == [4, 8]  # config.visualize_every

    # A finished run is left alone.
    before = snapshot(resumed)
    capsys.readouterr()
    pretrain.train(config, resumed)
    assert "already holds a finished run at step 10" in capsys.readouterr().out
    assert snapshot(resumed) == before
    # A larger total_steps continues it.
    config.total_steps = 12
    pretrain.train(config, resumed)
    assert saved_steps(resumed) == [10, 12]
    # Every start that ran steps is in runs.jsonl; the finished run's no-op is not.
    assert [line["resumed_from"] for line in provenance.read(resumed)] == [None, 6, 10]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("batch_size", 12, "config.batch_size=12 must be a positive multiple of the device"),
        ("model.variant", "XL/16", "config.model.variant"),
        ("input.image_size", 18, "config.input.image_size=18"),
        ("symmim.target_cell_size", 6, "config.symmim.target_cell_size=6"),
        ("dataset.name", "no_such_dataset", "config.dataset.name='no_such_dataset'"),
        ("method", "byol", "config.method='byol'"),
        ("dataset.split", "nope", "config.dataset.split='nope'"),
        ("max_consecutive_bad_steps", 0, "config.max_consecutive_bad_steps=0"),
        ("profile.start_step", 0, "config.profile.start_step=0"),
    ],
)
def test_failed_start_leaves_the_workdir_untouched(finished_run, tmp_path, field, value, message):
    config, finished = finished_run
    config = copy.deepcopy(config)
    workdir = str(tmp_path / "run")
    shutil.copytree(finished, workdir)
    before = snapshot(workdir)
    *parents, leaf = field.split(".")
    node = config
    for name in parents:
        node = node[name]
    node[leaf] = value
    config.total_steps = 4
    with pytest.raises(run.ConfigError, match=re.escape(message)):
        pretrain.train(config, workdir)
    assert snapshot(workdir) == before


def test_a_run_records_its_start_and_namespaced_metrics(finished_run):
    _, workdir = finished_run
    (start,) = provenance.read(workdir)
    assert start["event"] == "start" and start["resumed_from"] is None
    assert len(start["code"]["git_commit"]) == 40  # the tests run from a checkout
    lines = metric_lines(workdir)
    assert {"train/loss", "train/lr", "perf/images_per_sec"} <= set(lines[-1])
    assert all(name == "step" or "/" in name for line in lines for name in line)


def test_workdir_that_cannot_be_created_is_named(finished_run, tmp_path):
    config = copy.deepcopy(finished_run[0])
    (tmp_path / "a_file").write_text("")
    with pytest.raises(run.ConfigError, match="cannot be created"):
        pretrain.train(config, str(tmp_path / "a_file" / "run"))


def test_a_second_run_on_a_held_workdir_stops_naming_the_holder(finished_run, tmp_path):
    config = copy.deepcopy(finished_run[0])
    workdir = str(tmp_path / "run")
    shutil.copytree(finished_run[1], workdir)
    held = workdir_lib.lock(workdir)  # as a first run would, for its whole life
    before = snapshot(workdir)
    config.total_steps = 4
    try:
        with pytest.raises(run.ConfigError, match=rf"in use by pid {os.getpid()} .*one run per"):
            pretrain.train(config, workdir)
    finally:
        held.release()
    assert snapshot(workdir) == before


def test_resuming_with_another_learning_rate_is_refused_with_the_changes(finished_run, tmp_path):
    config = copy.deepcopy(finished_run[0])
    workdir = str(tmp_path / "run")
    shutil.copytree(finished_run[1], workdir)
    before = snapshot(workdir)
    config.total_steps = 4  # may change
    config.optim.base_lr *= 10
    config.input.image_size = 32
    with pytest.raises(
        run.ConfigError, match=r"another config.*input.image_size: 16 -> 32; optim.base_lr: "
    ):
        pretrain.train(config, workdir)
    assert snapshot(workdir) == before


def test_imagenet_without_manual_dir_fails_before_writing(tmp_path):
    config = demo.get_config()
    config.dataset.name = "imagenet2012"
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.dataset.manual_dir = str(tmp_path / "missing")
    with pytest.raises(run.ConfigError, match="config.dataset.manual_dir"):
        pretrain.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def run_cli(tmp_path, flag: str) -> subprocess.CompletedProcess:
    """`python -m symmim_jax.pretrain` on the demo config with one extra flag."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "symmim_jax.pretrain",
            "--config=symmim_jax/configs/demo.py",
            flag,
            f"--workdir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    result = run_cli(tmp_path, "--config.symmim.online_cell_size=6")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "Config error: config.symmim.online_cell_size=6 must be a positive multiple of "
        "the patch size 4 (a cell is a whole number of patches)."
    )
    assert not (tmp_path / "run").exists()


def test_cli_names_an_unknown_config_field_with_a_suggestion(tmp_path):
    result = run_cli(tmp_path, "--config.batch_sise=16")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Config error: unknown config field 'batch_sise'. "
        'Did you mean "batch_size" instead of "batch_sise"?'
    ]
    assert not (tmp_path / "run").exists()
