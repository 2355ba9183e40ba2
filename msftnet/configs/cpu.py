r"""A CPU-sized run that learns in under an hour on 2 cores.

  python -m experiments.train --config=experiments/configs/cpu.py --workdir=DIR

Width 2 (0.19 M parameters; XLA:CPU's 3D convolutions make wider decoders
2-3x slower per step), batch 8, physics loss, procedural data with
augmentation, 2000 steps. Measured on the 2-core development machine: 58 min
(0.8 steps/s), validation scatter loss 0.0095 against 0.0179 for the
untrained network and 0.0187 for the mean training density (IoU still low,
0.09); benchmarks/RESULTS.md, "Evidence it learns".
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
