"""One run per workdir (the lock, released by the kernel on any death; on gs://
a lease) and config drift on resume (refused with the differences, or accepted and recorded)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from etils import epath
import pytest
import tiny_config

from symmim_jax.train import lease, workdir


def test_a_second_lock_names_the_holder_and_a_released_lock_is_free(tmp_path):
    held = workdir.lock(str(tmp_path))
    with pytest.raises(workdir.WorkdirError, match=rf"in use by pid {os.getpid()} on "):
        workdir.lock(str(tmp_path))
    held.release()
    workdir.lock(str(tmp_path)).release()


def test_a_killed_holder_leaves_the_workdir_free(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from symmim_jax.train import workdir; "
            f"held = workdir.lock({str(tmp_path)!r}); print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(workdir.WorkdirError, match=rf"pid {holder.pid} "):
            workdir.lock(str(tmp_path))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    workdir.lock(str(tmp_path)).release()


def _config(**changes):
    config = tiny_config.get_config()
    for name, value in changes.items():
        section, _, field = name.rpartition(".")
        (config[section] if section else config)[field] = value
    return config


def test_drift_in_fields_that_change_the_run_is_refused_with_the_list(tmp_path):
    workdir.settle_config(str(tmp_path), _config(), resuming=False)
    saved = (tmp_path / "config.json").read_text()
    # Length, cadence, paths and layout may change on a resume.
    harmless = _config(total_steps=99, log_every=7, **{"dataset.data_dir": "/x", "mesh.fsdp": 2})
    workdir.settle_config(str(tmp_path), harmless, resuming=True)
    changed = _config(seed=5, **{"optim.base_lr": 0.5, "dataset.split": "test"})
    with pytest.raises(workdir.WorkdirError) as refused:
        workdir.settle_config(str(tmp_path), changed, resuming=True)
    message = str(refused.value)
    assert "dataset.split" in message and "optim.base_lr" in message and "seed: 0 -> 5" in message
    assert "total_steps" not in message and "accept_config_drift=True" in message
    assert (tmp_path / "config.json").read_text() == saved
    assert not (tmp_path / "runs.jsonl").exists()


def test_accepted_drift_is_recorded_and_becomes_the_runs_config(tmp_path):
    (tmp_path / "runs.jsonl").write_text(json.dumps({"event": "start"}) + "\n")
    workdir.settle_config(str(tmp_path), _config(), resuming=False)
    changed = _config(seed=5, accept_config_drift=True)
    workdir.settle_config(str(tmp_path), changed, resuming=True)
    events = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert events[0] == {"event": "start"}
    assert events[1]["event"] == "config_drift_accepted"
    assert events[1]["differences"] == ["seed: 0 -> 5"] and events[1]["time"] > 0
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 5
    workdir.settle_config(str(tmp_path), _config(seed=5), resuming=True)  # now the run's own


def test_a_fresh_start_rewrites_a_stale_config(tmp_path):
    """No checkpoint yet: nothing to mix, the new config is the run's."""
    workdir.settle_config(str(tmp_path), _config(), resuming=False)
    workdir.settle_config(str(tmp_path), _config(seed=3), resuming=False)
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3


# gs:// workdirs: a lease instead of a flock (lease.py), on the fake GCS.
FAST = dict(refresh=0.05, expiry=60.0, confirm_pause=0.0)


def _lease_at(gcs_workdir):
    return epath.Path(gcs_workdir) / workdir.LOCK_FILE


def _write_lease(gcs_workdir, host, pid, age):
    holder = dict(host=host, pid=pid, run_id="other", since="then", command="other run")
    _lease_at(gcs_workdir).write_text(json.dumps({**holder, "heartbeat": time.time() - age}))


def test_a_gcs_lease_is_renewed_keeps_others_out_and_is_released(gcs_workdir):
    held = workdir.lock(gcs_workdir, **FAST)
    first = json.loads(_lease_at(gcs_workdir).read_text())
    assert first["pid"] == os.getpid() and first["host"] == socket.gethostname()
    with pytest.raises(workdir.WorkdirError, match=rf"in use by pid {os.getpid()} on .*expires at"):
        workdir.lock(gcs_workdir, **FAST)
    deadline = time.monotonic() + 30
    while json.loads(_lease_at(gcs_workdir).read_text())["heartbeat"] == first["heartbeat"]:
        assert time.monotonic() < deadline, "the lease was not renewed"
        time.sleep(0.05)
    held.release()
    assert not _lease_at(gcs_workdir).exists()
    workdir.lock(gcs_workdir, **FAST).release()


def test_a_gcs_lease_of_a_dead_or_silent_run_is_taken_over(gcs_workdir):
    _write_lease(gcs_workdir, "elsewhere", 1, age=10)
    with pytest.raises(workdir.WorkdirError, match=r"pid 1 on elsewhere \(run other"):
        workdir.lock(gcs_workdir, **FAST)
    _write_lease(gcs_workdir, "elsewhere", 1, age=61)  # not renewed for longer than expiry
    workdir.lock(gcs_workdir, **FAST).release()
    dead = subprocess.Popen(["true"])
    dead.wait()
    _write_lease(gcs_workdir, socket.gethostname(), dead.pid, age=0)  # killed on this host
    workdir.lock(gcs_workdir, **FAST).release()


def test_of_two_gcs_runs_starting_together_the_last_writer_wins(gcs_workdir, monkeypatch):
    def another_run_writes_meanwhile(seconds):
        _write_lease(gcs_workdir, "elsewhere", 1, age=0)

    monkeypatch.setattr(lease.time, "sleep", another_run_writes_meanwhile)
    with pytest.raises(workdir.WorkdirError, match=r"in use by pid 1 on elsewhere"):
        workdir.lock(gcs_workdir, **FAST)
