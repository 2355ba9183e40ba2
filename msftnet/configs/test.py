r"""Tiny config for tests: a few steps in seconds, logging every step.

  python -m experiments.train --config=experiments/configs/test.py --workdir=DIR

Width 2, batch 4, 6 steps, validation every 3 steps on 2 batches. It only
checks the machinery (no learning expected).
"""

from msftnet.configs.base import base_config


def get_config():
  c = base_config()
  c.width = 2
  c.batch_size = 4
  c.n_samples = 96
  c.total_steps = 6
  c.log_every = 1
  c.eval_every = 3
  c.eval_batches = 2
  c.checkpoint_every = 3
  c.keep_checkpoints = 2
  return c
