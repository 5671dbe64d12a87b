"""One run per workdir, and one config per run.

The lock: process 0 holds an exclusive `fcntl.flock` on WORKDIR/run.lock for
the life of the run, and writes who holds it into the file. The kernel
releases it when the process dies, however it dies, so a killed run never
blocks its own restart. On gs:// (a bucket has no lock that a dead holder
releases) run.lock is a lease instead (lease.py): renewed by the run every 30
s, it keeps other runs out until 120 s after its last renewal, and a restart
on the holder's host takes over at once when the holder is dead; a release at
a clean end deletes it. All processes learn process 0's answer.

The config: a resume compares the config with the run's own (WORKDIR/config.json)
and refuses any difference in a field that changes what the run computes, listing
them, unless `config.accept_config_drift` is set; accepted differences are
appended to WORKDIR/runs.jsonl ("event": "config_drift_accepted") and config.json
takes the new values.
"""

import fcntl
import json
import os
import socket
import sys
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from symmim_jax.train import lease, provenance
from symmim_jax.train.paths import as_path

LOCK_FILE, CONFIG_FILE = "run.lock", "config.json"
DRIFT_FLAG = "accept_config_drift"

# Fields that do not change what is computed: the run's length, logging and
# evaluation cadence, checkpoint cadence, paths, and how the work is laid out
# over devices. "name.*" covers a section.
UNCHECKED = (
    "total_steps",
    "epochs",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "visualize_every",
    "eval_every",
    "max_consecutive_bad_steps",
    "init_from",
    "init_step",
    "dataset.data_dir",
    "dataset.manual_dir",
    "grad_accum_steps",
    "model.attention_impl",
    "model.remat",
    "mesh.*",
    "knn.*",
    DRIFT_FLAG,
)


class WorkdirError(ValueError):
    """A workdir that another run holds, or whose run has another config."""


class Lock:
    """The held lock of a workdir: a flock's file, a gs:// lease, or nothing
    (processes > 0)."""

    def __init__(self, held=None):
        self._held = held

    def release(self):
        if isinstance(self._held, lease.Lease):
            self._held.release()  # stops renewing, deletes the lease
        elif self._held is not None:
            self._held.close()  # closing the file releases the flock
        self._held = None


def _agreed(flag: bool) -> bool:
    """Process 0's `flag`, on every process."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def _holder() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:300],
        }
    )


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        where = f"pid {holder['pid']} on {holder['host']}"
        return f"{where} (since {holder['since']}: {holder['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _flock(path) -> tuple:
    """-> (the held file, None) or (None, who holds it)."""
    file = open(path, "a+")  # noqa: SIM115 (held for the life of the run)
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = _describe(file.read())
        file.close()
        return None, holder
    file.truncate(0)
    file.write(_holder() + "\n")
    file.flush()
    return file, None


def lock(workdir: str, **lease_timing) -> Lock:
    """Takes WORKDIR's lock (process 0: a flock, or on gs:// a lease, with
    `lease_timing`: lease.take's refresh, expiry, confirm_pause) -> Lock;
    raises WorkdirError naming the holder when another run has it."""
    path = as_path(workdir) / LOCK_FILE
    held, holder = None, None
    if jax.process_index() == 0 and "://" in str(path):
        try:
            held = lease.take(path, **lease_timing)
        except lease.LeaseHeld as err:
            holder = str(err)
    elif jax.process_index() == 0:
        held, holder = _flock(path)
    if _agreed(holder is not None):
        Lock(held).release()
        raise WorkdirError(
            f"--workdir={workdir} is in use by {holder or 'another run (see process 0)'}: "
            "one run per workdir. Wait for it to end, or use another --workdir."
        )
    return Lock(held)


def _flat(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat or {prefix: {}}


def _checked(name: str) -> bool:
    name = name.rstrip(".")
    return not any(
        name == field or (field.endswith(".*") and name.startswith(field[:-1]))
        for field in UNCHECKED
    )


def differences(saved: dict, current: dict) -> list[str]:
    """'field: saved -> current' for every checked field that differs."""
    old, new = _flat(saved), _flat(current)
    absent = "(absent)"
    return [
        f"{name.rstrip('.')}: {json.dumps(old.get(name, absent))} -> "
        f"{json.dumps(new.get(name, absent))}"
        for name in sorted(set(old) | set(new))
        if _checked(name) and old.get(name, absent) != new.get(name, absent)
    ]


def _saved_config(path) -> dict:
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise WorkdirError(
            f"{path} is not valid JSON ({err}); restore it from a checkpoint's record "
            "(checkpoints/N/record) or move the workdir aside."
        ) from None


def settle_config(workdir: str, config, resuming: bool):
    """Writes WORKDIR/config.json on a fresh start; on a resume refuses a
    config that changes the run (WorkdirError listing the differences)
    unless config.accept_config_drift, then records them."""
    path = as_path(workdir) / CONFIG_FILE
    current = json.loads(config.to_json_best_effort())
    changes = differences(_saved_config(path), current) if resuming and path.exists() else []
    if changes and not config.get(DRIFT_FLAG):
        raise WorkdirError(
            f"--workdir={workdir} holds a run with another config; resuming would mix two "
            f"runs in one history. Changed: {'; '.join(changes)}. Use another --workdir, "
            f"or pass --config.{DRIFT_FLAG}=True to go on with the new values "
            f"(recorded in {as_path(workdir) / provenance.FILE_NAME})."
        )
    if jax.process_index() != 0 or (resuming and path.exists() and not changes):
        return
    if changes:
        provenance.append(
            workdir,
            {"event": "config_drift_accepted", "time": time.time(), "differences": changes},
        )
        logging.warning("Config changes accepted for %s: %s", workdir, "; ".join(changes))
    path.write_text(config.to_json_best_effort(indent=2))
