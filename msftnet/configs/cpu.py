r"""A CPU-sized run that learns in under an hour on 2 cores.

  python -m experiments.train --config=experiments/configs/cpu.py --workdir=DIR

Width 2 (XLA:CPU's 3D convolutions make wider decoders much slower per
step), batch 8, physics loss, procedural data with augmentation, 2000
steps. Its runtime on 2 cores and its validation losses against the
untrained network and the mean training density: benchmarks/RESULTS.md,
"Evidence it learns".
"""

from msftnet.configs.base import base_config


def get_config():
  c = base_config()
  c.width = 2
  c.batch_size = 8
  c.learning_rate = 1e-3
  c.n_samples = 60_000
  c.total_steps = 2000
  c.log_every = 25
  c.eval_every = 500
  c.eval_batches = 8
  c.checkpoint_every = 250
  return c
