"""Joining a multi-process run: `jax.distributed.initialize` from flags or env.

One process per host (TPU VM workers, GPU hosts) or per GPU. Every process runs
the same command; they must call this before anything touches a device.

- TPU pod slice, SLURM, Open MPI: `--distributed`; JAX finds the coordinator,
  the process count and the process id in the environment.
- Other GPU hosts: `--coordinator_address=HOST:PORT --num_processes=N
  --process_id=I` (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
  JAX_PROCESS_ID), the same address on every host, process 0 on HOST.
"""

import os
import socket
import sys
import time

from absl import flags
import jax

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Join a multi-process run whose layout JAX detects "
    "(TPU pod slice, SLURM, Open MPI). Implied by --coordinator_address.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    os.environ.get("JAX_COORDINATOR_ADDRESS"),
    "HOST:PORT of process 0 (env JAX_COORDINATOR_ADDRESS).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes",
    int(os.environ.get("JAX_NUM_PROCESSES", 0)) or None,
    "Processes in the run (env JAX_NUM_PROCESSES).",
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id",
    int(os.environ["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in os.environ else None,
    "This process's id, 0 .. num_processes - 1 (env JAX_PROCESS_ID).",
)
_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 120, "Seconds to wait for the other processes to join."
)


class DistributedError(RuntimeError):
    """The processes could not join."""


def _wait_for_coordinator(address: str, timeout: float):
    """Raises DistributedError if nothing listens at `address` within `timeout`.

    JAX aborts the whole process (no exception) when the coordinator stays
    unreachable, so a worker checks the address itself first.
    """
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
            return
        except (OSError, ValueError) as err:
            if time.monotonic() > deadline or isinstance(err, ValueError):
                raise DistributedError(
                    f"--coordinator_address={address} (process 0's HOST:PORT) did not "
                    f"answer within --distributed_timeout={timeout} s ({err}). Start "
                    "process 0 on that host, check the address and port, and that "
                    "every process got the same one."
                ) from None
            time.sleep(1)


def initialize_from_flags():
    """Joins the run the flags describe; a no-op for a single process."""
    address, count, index = _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
    if not (_DISTRIBUTED.value or address):
        return
    if address and (count is None or index is None):
        raise DistributedError(
            f"--coordinator_address={address} needs --num_processes and --process_id "
            "(or JAX_NUM_PROCESSES and JAX_PROCESS_ID)."
        )
    if count is not None and index is not None and not 0 <= index < count:
        raise DistributedError(f"--process_id={index} must be in [0, --num_processes={count}).")
    if address and index:
        _wait_for_coordinator(address, _TIMEOUT.value)
    print(
        f"Joining {count or 'auto'} processes at {address or 'auto'} as process "
        f"{index if index is not None else 'auto'}.",
        file=sys.stderr,
        flush=True,
    )
    try:
        jax.distributed.initialize(
            coordinator_address=address,
            num_processes=count,
            process_id=index,
            initialization_timeout=_TIMEOUT.value,
        )
    except ValueError as err:  # no cluster found in the environment
        raise DistributedError(
            f"--distributed: {err} Outside a TPU pod, SLURM or Open MPI job, give "
            "--coordinator_address, --num_processes and --process_id."
        ) from None
