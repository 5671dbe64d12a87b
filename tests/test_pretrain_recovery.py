"""What a pretraining run survives: kills, SIGTERM, torn checkpoints, NaNs, full disks."""

import glob
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from fake_fashion_mnist import write_fake_set
import jax
import numpy as np
import pytest
import tiny_config

from symmim_jax import pretrain
from symmim_jax.data import sources
from symmim_jax.train import checkpoint, loop, run, sharding

pytestmark = pytest.mark.slow  # each test runs pretraining to a failure and back

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(fake Fashion-MNIST source dir, prepared tfds data dir)."""
    source = tmp_path_factory.mktemp("fmnist")
    write_fake_set(source, num_train=64, num_test=8)
    return source, tmp_path_factory.mktemp("tfds")


@pytest.fixture
def config(dataset):
    config = tiny_config.get_config()
    config.dataset.manual_dir, config.dataset.data_dir = (str(d) for d in dataset)
    config.dataset.shuffle_buffer = 64
    config.log_every = 1
    config.checkpoint_every = 2
    config.keep_checkpoints = 2
    return config


def saved_steps(workdir):
    return checkpoint.open_manager(str(workdir), read_only=True).all_steps()


def params_at(workdir, step):
    return checkpoint.load_params(str(workdir), step)[0]


def max_abs_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_non_finite_steps_are_skipped_then_the_run_stops(config, tmp_path):
    config.debug.nan_at_steps = (3,)
    config.total_steps = 4
    pretrain.train(config, str(tmp_path / "one_nan"))
    lines = (tmp_path / "one_nan" / "metrics.jsonl").read_text().splitlines()
    assert '"train/bad_steps": 1' in lines[2] and '"train/consecutive_bad_steps": 1' in lines[2]
    assert '"train/consecutive_bad_steps": 0' in lines[3]

    config.debug.nan_at_steps = (5, 6, 7, 8)
    config.max_consecutive_bad_steps = 3
    config.total_steps = 10
    workdir = tmp_path / "many_nans"
    with pytest.raises(loop.TrainingStopped, match=r"last 3 steps \(up to step 7\)"):
        pretrain.train(config, str(workdir))
    assert saved_steps(workdir) == [4, 6]
    # Steps 5 and 6 were skipped: checkpoint 6 holds the parameters of step 4.
    assert max_abs_difference(params_at(workdir, 4), params_at(workdir, 6)) == 0.0


def test_torn_checkpoint_falls_back_to_the_newest_intact_one(config, tmp_path, caplog):
    workdir = tmp_path / "run"
    config.total_steps = 6
    pretrain.train(config, str(workdir))
    assert saved_steps(workdir) == [4, 6]
    for path in glob.glob(
        str(workdir / "checkpoints" / "6" / "state" / "**" / "*"), recursive=True
    ):
        if os.path.isfile(path):
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    config.total_steps = 8
    with caplog.at_level(logging.WARNING):
        pretrain.train(config, str(workdir))
    assert "Checkpoint 6 in" in caplog.text and "cannot be read" in caplog.text
    assert [p.name.split("-")[0] for p in (workdir / "unreadable_checkpoints").iterdir()] == ["6"]
    assert saved_steps(workdir) == [6, 8]  # resumed from 4, saved 6 and 8 again

    # Every checkpoint unreadable: an error, never a silent fresh start.
    for step in (6, 8):
        os.remove(workdir / "checkpoints" / str(step) / "state" / "_METADATA")
    config.total_steps = 10
    with pytest.raises(RuntimeError, match="not starting from scratch"):
        pretrain.train(config, str(workdir))


def test_checkpoint_of_another_model_is_refused_and_kept(config, tmp_path):
    workdir = tmp_path / "run"
    config.total_steps = 2
    pretrain.train(config, str(workdir))
    config.symmim.projector_out_dim = 4
    config.total_steps = 4
    with pytest.raises(run.ConfigError, match="projector_out_dim"):  # the drift check
        pretrain.train(config, str(workdir))
    config.accept_config_drift = True  # past it, the checkpoint itself is refused
    with pytest.raises(checkpoint.CheckpointMismatch, match="config it was written with"):
        pretrain.train(config, str(workdir))
    assert saved_steps(workdir) == [2]
    assert not (workdir / "unreadable_checkpoints").exists()


# Subprocess runs of the CLI, as a scheduler would see them.


def launch(config, workdir, total_steps, log, wrapper=(), **popen_kwargs):
    overrides = [
        f"--config.dataset.manual_dir={config.dataset.manual_dir}",
        f"--config.dataset.data_dir={config.dataset.data_dir}",
        "--config.dataset.shuffle_buffer=64",
        "--config.log_every=1",
        "--config.checkpoint_every=1",
        "--config.keep_checkpoints=2",
        f"--config.total_steps={total_steps}",
    ]
    return subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "symmim_jax.pretrain",
            "--config=tests/tiny_config.py",
            *overrides,
            f"--workdir={workdir}",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        **popen_kwargs,
    )


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


def newest_step(workdir):
    steps = (
        [int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit()]
        if (workdir / "checkpoints").exists()
        else []
    )
    return max(steps, default=0)


def saving_now(workdir):
    return (workdir / "checkpoints").exists() and any(
        "tmp" in name for name in os.listdir(workdir / "checkpoints")
    )


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(config, tmp_path):
    total = 10
    sources.get_builder(config.dataset)  # prepare the tfds records before the runs
    logs = open(tmp_path / "runs.log", "w")  # noqa: SIM115 (every launch below)
    straight = tmp_path / "straight"
    assert launch(config, straight, total, logs).wait(timeout=600) == 0

    killed = tmp_path / "killed"
    rng = random.Random(0)
    kill_points = [
        ("during start-up", lambda: True, 2.0),
        ("during a checkpoint save", lambda: saving_now(killed), 0.0),
        ("between steps", lambda: newest_step(killed) >= 6, rng.uniform(0.0, 0.5)),
    ]
    for name, condition, delay in kill_points:
        process = launch(config, killed, total, logs)
        try:
            wait_for(lambda c=condition, p=process: c() or p.poll() is not None)
            time.sleep(delay)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        print(
            f"killed {name}: newest checkpoint {newest_step(killed)}, "
            f"save in flight: {saving_now(killed)}"
        )
    assert launch(config, killed, total, logs).wait(timeout=600) == 0
    difference = max_abs_difference(params_at(straight, total), params_at(killed, total))
    print(f"max abs difference after 3 kills: {difference}")
    assert difference == 0.0
    assert (
        max_abs_difference(
            checkpoint.load_params(str(straight), subtree="target_params")[0],
            checkpoint.load_params(str(killed), subtree="target_params")[0],
        )
        == 0.0
    )


def test_sigterm_saves_the_current_step_then_a_refused_save_stops_the_resume(config, tmp_path):
    workdir = tmp_path / "run"
    with open(tmp_path / "run.log", "w") as log:
        process = launch(config, workdir, 10_000, log)
        wait_for(lambda: newest_step(workdir) >= 3 or process.poll() is not None)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    output = (tmp_path / "run.log").read_text()
    stopped_at = int(output.split("Stop signal: saved step ")[1].split(";")[0])
    kept = saved_steps(workdir)
    assert kept[-1] == stopped_at

    # The resume, on a disk that refuses its first save (step stopped_at + 1).
    console, seconds = resume_where_files_cannot_grow(config, workdir, stopped_at + 2)
    print(f"exit {seconds:.1f} s after the Stopped line; {len(console)} console lines")
    assert f"Resumed from step {stopped_at}" in "".join(console)
    assert seconds < 30  # orbax's threads used to hold the exit for ~300 s
    (stopped,) = [line for line in console if line.startswith("Stopped:")]
    assert f"Saving a checkpoint (step {stopped_at + 1}) in {workdir / 'checkpoints'}" in stopped
    assert "File too large" in stopped and "are intact" in stopped
    assert "Traceback" not in "".join(console)  # orbax's went to log.txt
    assert "OUT_OF_RANGE" in (workdir / "log.txt").read_text()
    assert saved_steps(workdir) == kept
    assert params_at(workdir, stopped_at)["pixel_head"]["kernel"].shape == (32, 48)


def resume_where_files_cannot_grow(config, workdir, total_steps):
    """Runs the CLI where no file can grow past 64 KiB (EFBIG, "File too
    large", as on a full disk; root ignores permissions, not this; Python
    ignores SIGXFSZ) -> (its console lines, seconds from its Stopped line to
    its exit). Every checkpoint has larger files (its _sharding, its data);
    log.txt may reach the limit too, as on a full disk."""
    limit = 64 * 1024
    assert max(p.stat().st_size for p in (workdir / "checkpoints").rglob("*")) > limit
    process = launch(
        config,
        workdir,
        total_steps,
        subprocess.PIPE,
        text=True,
        wrapper=("prlimit", f"--fsize={limit}"),
    )
    console, stopped_at = [], None
    for line in process.stdout:
        console.append(line)
        if line.startswith("Stopped:"):
            stopped_at = time.monotonic()
    assert process.wait(timeout=120) == 1 and stopped_at is not None
    return console, time.monotonic() - stopped_at


def test_a_blow_up_is_skipped_so_the_checkpoints_hold_what_came_before(config, tmp_path):
    """lr 1e6: every update far above the parameters' scale is rejected, the
    run stops with the message, and no checkpoint holds blown-up weights."""
    config.optim.base_lr = 1e6
    config.total_steps = 8
    config.max_consecutive_bad_steps = 3
    workdir = tmp_path / "run"
    with pytest.raises(loop.TrainingStopped, match=r"spike \(config.guard\)"):
        pretrain.train(config, str(workdir))
    assert saved_steps(workdir)
    for step in saved_steps(workdir):
        largest = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(params_at(workdir, step)))
        assert largest < 100.0, (step, largest)


def test_randomly_damaged_checkpoints_never_resume(config, tmp_path):
    """Bytes flipped, files truncated, zeroed or deleted in the newest step, at
    random: the restore either gives back exactly what was saved or falls back
    to the older step, never damaged state."""
    config.total_steps = 4
    original = tmp_path / "original"
    pretrain.train(config, str(original))
    task = pretrain.Pretraining(config)
    length, facts = run.prepare(task, jax.device_count())
    objective, tx, _ = task.build(length, facts)
    mesh = sharding.make_mesh(config.mesh)
    _, abstract = run.abstract_state(config, objective, tx, mesh)

    def restore_from(workdir):
        manager = checkpoint.open_manager(str(workdir))
        try:
            return checkpoint.restore_newest_intact(manager, abstract, str(workdir / "quarantine"))
        finally:
            manager.close()

    saved = jax.device_get(restore_from(original)[0])
    rng = random.Random(0)
    outcomes = []
    for trial in range(8):
        workdir = tmp_path / f"trial{trial}"
        shutil.copytree(original, workdir)
        files = [p for p in (workdir / "checkpoints" / "4").rglob("*") if p.is_file()]
        kind = rng.choice(["flipped", "truncated", "zeroed", "deleted"])
        damage(rng.choice(files), kind, rng)
        state, _, step = restore_from(workdir)
        outcomes.append((kind, step))
        if step == 4:  # read back: then exactly as saved
            assert max_abs_difference(jax.device_get(state), saved) == 0.0
        else:
            assert step == 2
    print(f"damage and the step restored: {outcomes}")


def damage(path, kind, rng):
    data = bytearray(path.read_bytes())
    start = rng.randrange(max(1, len(data)))
    if kind == "flipped":
        for i in range(start, min(len(data), start + 4096)):
            data[i] = rng.randrange(256)
        path.write_bytes(bytes(data))
    elif kind == "truncated":
        path.write_bytes(bytes(data[:start]))
    elif kind == "zeroed":
        path.write_bytes(bytes(len(data)))
    else:
        path.unlink()
