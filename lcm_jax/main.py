r"""Command line for training: flags in, `train.train_and_evaluate(config, workdir)` out.

  python -m lcm_jax.main --config configs/lcm.py:stage=main,data=synthetic,runlocal=True \
      --workdir /tmp/lcm_local [--config.batch_size=16 ...]

On a multi-host cluster (TPU pod, SLURM, Open MPI, or JAX_COORDINATOR_ADDRESS set), every
process runs the same command; `jax.distributed.initialize()` finds its peers.
Exit status: 0 when done or preempted (a checkpoint was saved), 1 on a non-finite loss, 2 for
a config, init_from or workdir that cannot be used (nothing was written).
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from lcm_jax import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config, e.g. configs/lcm.py:stage=main", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])

# Environment variables by which a launcher announces more than one process.
_MULTIPROCESS_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES",
)


def _is_multiprocess() -> bool:
    for name in _MULTIPROCESS_ENV:
        value = os.environ.get(name, "")
        if name == "JAX_COORDINATOR_ADDRESS" and value:
            return True
        if name == "TPU_WORKER_HOSTNAMES" and "," in value:
            return True
        if value.isdigit() and int(value) > 1:
            return True
    return False


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if _is_multiprocess():
        jax.distributed.initialize()
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
        logging.error("%s", e)
        sys.exit(1)
    except train.ConfigError as e:
        logging.error("%s", e)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
