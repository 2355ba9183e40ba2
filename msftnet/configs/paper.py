r"""The paper's training: width 64 (~196 M parameters), batch 32, 50 epochs.

  python -m experiments.train --config=experiments/configs/paper.py --workdir=DIR

Physics loss (eq. 3 + 0.1 x eq. 4), Adam, 140 000 procedural samples split
5:1 (116 666 train -> 3 645 steps per epoch, 182 292 steps), one random
detector filter per training sample per step. Data parallel over all
devices (and hosts, with --coordinator_address/--num_processes/--process_id).
Expected runtime: the paper needed 63 h on four RTX 2080 Ti; this is a GPU
cluster job (rates on CPU and on one H100: benchmarks/RESULTS.md,
"Training throughput").
Expected result: validation scatter loss near the paper's (its Fig. 5 shows
the physics-trained network's losses); not yet measured here.
"""

from msftnet.configs.base import base_config


def get_config():
  c = base_config()
  c.width = 64
  c.batch_size = 32
  c.n_samples = 140_000
  steps_per_epoch = (5 * c.n_samples // 6) // c.batch_size
  c.total_steps = 50 * steps_per_epoch
  c.eval_every = steps_per_epoch
  c.eval_batches = (c.n_samples - 5 * c.n_samples // 6) // c.batch_size
  c.checkpoint_every = 1000
  c.log_every = 100
  c.data_threads = 4
  return c
