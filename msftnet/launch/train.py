r"""Train the reconstruction network.

  python -m experiments.train --config=experiments/configs/cpu.py --workdir=DIR \
      [--config.total_steps=N] [--config.width=8] ...

Configs: ``experiments/configs/{paper,cpu,test}.py`` (each docstring gives its
command, runtime and expected result). Re-running the same command resumes
from the latest checkpoint in ``DIR/checkpoints``; metrics go to
``DIR/metrics.jsonl``. Multi-host (GPU cluster): pass
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``, or
``--distributed`` where ``jax.distributed.initialize`` finds them in the
environment (SLURM, Open MPI); ``DIR`` on a filesystem every process sees.
"""

from __future__ import annotations

import logging as pylogging
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from msftnet import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "Multi-host: coordinator HOST:PORT.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "Multi-host: this process's index.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host from the environment: "
    "jax.distributed.initialize() reads the cluster (SLURM, Open MPI).")


class _QuietOrbax(pylogging.Filter):
  """Drops orbax's INFO lines (hundreds per short run); warnings stay."""

  def filter(self, record):
    return record.levelno >= pylogging.WARNING or (
        f"{os.sep}orbax{os.sep}" not in record.pathname)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if _CONFIG.value is None:
    raise app.UsageError("--config=experiments/configs/NAME.py is required.")
  if _COORDINATOR.value or _NUM_PROCESSES.value or _DISTRIBUTED.value:
    # CPU processes exchange gradients over gloo (GPUs use NCCL regardless).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  logging.set_verbosity(logging.INFO)
  logging.get_absl_logger().addFilter(_QuietOrbax())
  logging.info("devices: %s (process %d of %d)", jax.devices(),
               jax.process_index(), jax.process_count())
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (train.NonFiniteLossError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
