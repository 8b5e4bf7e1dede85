"""Joining a multi-process JAX run (`jax.distributed`), shared by training and evaluation.

Every process of a run starts the same command; `initialize` connects it to the others before
anything touches a device. The three settings come from, in order:

1. the command's flags (`--coordinator_address`, `--num_processes`, `--process_id`);
2. the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID;
3. JAX's own cluster detection, when a launcher announces several processes (SLURM_NTASKS or
   OMPI_COMM_WORLD_SIZE > 1, or a TPU pod slice's TPU_WORKER_HOSTNAMES naming several hosts).

Each setting may come from a flag or from the environment, but all three must be given
together; with none of them and no launcher, the process runs alone and nothing is initialised.

    JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \\
        python -m lcm_jax.main --config configs/lcm.py:stage=main --workdir $W/main
"""

from __future__ import annotations

import os
import sys
import threading

import jax

# Setting -> the environment variable that may give it.
ENV = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}
DEFAULT_TIMEOUT_S = 300  # how long to wait for the coordinator and every process
EXIT_CANNOT_JOIN = 2  # the exit status of a process that could not join its peers


class DistributedError(ValueError):
    """The multi-process settings are incomplete or wrong, or the peers cannot be reached."""


def _launcher_announces_processes() -> bool:
    """True when SLURM, Open MPI or a TPU pod slice started this process among several."""
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return True
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def settings(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> dict | None:
    """The explicit settings (flags first, then the environment), or None when none is given.

    Raises DistributedError when only some are given or a number is not a valid one.
    """
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes}
    given["process_id"] = process_id
    values = {}
    for name, value in given.items():
        if value is None or value == "":
            value = os.environ.get(ENV[name]) or None
        values[name] = value
    missing = [name for name, value in values.items() if value is None]
    if len(missing) == len(values):
        return None
    if missing:
        described = ", ".join(f"--{name} or {ENV[name]}" for name in missing)
        raise DistributedError(f"a multi-process run needs all three settings; missing {described}")
    try:
        values["num_processes"] = int(values["num_processes"])
        values["process_id"] = int(values["process_id"])
    except ValueError:
        raise DistributedError(
            f"num_processes and process_id must be integers, got {values['num_processes']!r} "
            f"and {values['process_id']!r}"
        ) from None
    if not 0 <= values["process_id"] < values["num_processes"]:
        raise DistributedError(
            f"process_id must be in [0, num_processes={values['num_processes']}), got "
            f"{values['process_id']}"
        )
    return values


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> bool:
    """Joins the run's other processes (see the module docstring); returns whether it did.

    Raises DistributedError for incomplete settings. When the peers do not all connect within
    `timeout_s` seconds (a wrong address, a process that did not start), the process prints one
    line naming the coordinator and exits with status 2: JAX would otherwise abort it from C++
    (SIGABRT and a stack trace), which Python cannot catch.
    """
    explicit = settings(coordinator_address, num_processes, process_id)
    if explicit is None and not _launcher_announces_processes():
        return False
    where = explicit["coordinator_address"] if explicit else "the address the launcher gives"

    def give_up():
        sys.stderr.write(
            f"error: could not join the multi-process run through the coordinator at {where} "
            f"within {timeout_s} s; start every process with the same address and count\n"
        )
        sys.stderr.flush()
        os._exit(EXIT_CANNOT_JOIN)

    watchdog = threading.Timer(timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()  # JAX's own deadline is later, so this message comes first
    try:
        jax.distributed.initialize(**(explicit or {}), initialization_timeout=timeout_s + 30)
    finally:
        watchdog.cancel()
    return True
