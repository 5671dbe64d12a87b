"""A lease on a gs:// workdir: one run per workdir where no lock exists.

A bucket has no lock that the kernel releases when its holder dies, so the run
writes WORKDIR/run.lock (JSON: host, pid, command, a unique run id, and a
heartbeat time that a daemon thread renews every `refresh` seconds). A starting
run that finds a lease of another run renewed less than `expiry` seconds ago
stops; it takes over a lease that expired, or whose holder ran on this host
and is dead (so a killed run's restart on the same host never waits).

After writing its lease, a starter waits `confirm_pause` seconds and reads it
back: of two runs that started together, the one that wrote last goes on and
the other stops. This narrows the race but does not close it (two writes
further apart than the pause, both after both reads, would both go on):
GCS's generation preconditions, which would close it, are not available
through etils.epath. The heartbeat is the holder's clock, read with the
starter's: hosts' clocks must agree to well within `expiry`.
"""

import json
import os
import socket
import sys
import threading
import time
import uuid

from absl import logging
from etils import epath

REFRESH, EXPIRY, CONFIRM_PAUSE = 30.0, 120.0, 1.0  # seconds


class LeaseHeld(RuntimeError):
    """Another run holds the workdir's lease; the message names it."""


def _read(path: epath.Path) -> dict | None:
    """The lease at `path`, or None when there is none (or it is torn)."""
    try:
        lease = json.loads(path.read_text())
    except (OSError, ValueError):  # epath's gs:// backends raise OSError subclasses
        return None
    complete = isinstance(lease, dict) and "run_id" in lease
    return lease if complete and isinstance(lease.get("heartbeat"), int | float) else None


def _dead_here(lease: dict) -> bool:
    """Whether the holder ran on this host and its process is gone."""
    if lease.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(lease["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError):
        return False
    return False


def describe(lease: dict, expiry: float) -> str:
    """Who holds `lease`, and when it expires unless renewed."""
    expires = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lease["heartbeat"] + expiry))
    return (
        f"pid {lease.get('pid')} on {lease.get('host')} (run {lease['run_id']}, since "
        f"{lease.get('since')}: {lease.get('command')}); its lease expires at {expires} "
        "unless renewed"
    )


class Lease:
    """This run's lease on a workdir, renewed by a daemon thread until `release`."""

    def __init__(self, path: epath.Path, refresh: float):
        self.path = path
        self.holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": " ".join(sys.argv)[:300],
            "run_id": uuid.uuid4().hex,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew, args=(refresh,), name="workdir_lease", daemon=True
        )

    def start_renewing(self):
        self._thread.start()

    def write(self):
        self.path.write_text(json.dumps({**self.holder, "heartbeat": time.time()}))

    def ours(self) -> bool:
        return (_read(self.path) or {}).get("run_id") == self.holder["run_id"]

    def _renew(self, refresh: float):
        while not self._stop.wait(refresh):
            try:
                if not self.ours():
                    logging.error(
                        "The lease %s is no longer this run's (%s): another run may be "
                        "writing to this workdir.",
                        self.path,
                        _read(self.path),
                    )
                    return
                self.write()
            except OSError as err:  # a failed renewal: the next one may pass
                logging.warning("Cannot renew the lease %s: %s", self.path, err)

    def release(self):
        """Stops renewing and deletes the lease, if it is still this run's."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            if self.ours():
                self.path.unlink()
        except OSError as err:
            logging.warning("Cannot delete the lease %s: %s", self.path, err)


def take(
    path: epath.Path,
    *,
    refresh: float = REFRESH,
    expiry: float = EXPIRY,
    confirm_pause: float = CONFIRM_PAUSE,
) -> Lease:
    """Takes the lease at `path` -> Lease (renewed from now on); LeaseHeld
    naming the holder when another run holds it."""
    current = _read(path)
    if current is not None and time.time() - current["heartbeat"] < expiry:
        if not _dead_here(current):
            raise LeaseHeld(describe(current, expiry))
        logging.warning("Taking over the lease %s of a run that died: %s", path, current)
    lease = Lease(path, refresh)
    lease.write()
    time.sleep(confirm_pause)
    winner = _read(path)
    if winner is None or winner["run_id"] != lease.holder["run_id"]:
        raise LeaseHeld(describe(winner, expiry) if winner else "a run that started with this one")
    lease.start_renewing()
    return lease
