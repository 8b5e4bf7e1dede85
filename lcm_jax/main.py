r"""Command line for training: flags in, `train.train_and_evaluate(config, workdir)` out.

  python -m lcm_jax.main --config configs/lcm.py:stage=main,data=synthetic,runlocal=True \
      --workdir $W/local [--config.batch_size=16 ...]

Several processes (a TPU pod slice, SLURM or Open MPI tasks, or processes started by hand) run
the same command; `lcm_jax.distributed.initialize` joins them, with the settings from the flags
--coordinator_address, --num_processes and --process_id, else from the environment variables
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, else from JAX's cluster
detection. A single process with none of them initialises nothing.

Exit status: 0 when done or preempted (a checkpoint was saved); 1 on a non-finite loss; 2 for
flags, a config, data, init_from, workdir or multi-process settings that cannot be used, with
one line "error: ..." on stderr and nothing written.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from lcm_jax import distributed, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config, e.g. configs/lcm.py:stage=main", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for a multi-process run."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes of the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, n).")
_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout",
    distributed.DEFAULT_TIMEOUT_S,
    "Seconds to wait for every process of a multi-process run to join.",
)

EXIT_NON_FINITE, EXIT_BAD_INPUT = 1, 2


def fail(message, status: int = EXIT_BAD_INPUT) -> None:
    """Ends the process with `message` as one line "error: ..." on stderr."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.exit(status)


def _first_and_last_line(error: Exception) -> str:
    """absl and ml_collections put a traceback inside some messages: its last line is the
    cause."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:1] + lines[1:][-1:])


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad flag, --config file, config argument or override as
    one line and status 2 (ml_collections raises some of them when the config is read)."""
    try:
        remaining = flags.FLAGS(argv)
        _CONFIG.value.to_dict()
    except (AttributeError, KeyError) as e:
        field = str(e).strip("\"'")
        fail(f"a --config.<field> flag names a field that the config does not have: {field}")
    except (flags.Error, OSError, ValueError, TypeError) as e:
        fail(_first_and_last_line(e))
    return remaining


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    try:
        distributed.initialize(
            _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _TIMEOUT.value
        )
    except distributed.DistributedError as e:
        fail(e)
    logging.info(
        "JAX process %d of %d, %d local / %d global devices.",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    logging.info("Config:\n%s", _CONFIG.value)
    try:
        train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except train.NonFiniteError as e:
        fail(e, EXIT_NON_FINITE)
    except train.ConfigError as e:
        fail(e)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
