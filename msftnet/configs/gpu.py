r"""A one-GPU run of minutes: the bundled recipe, 4x wider, for a time slot.

  python -m experiments.train --config=experiments/configs/gpu.py --workdir=DIR

The bundled model's recipe (hybrid loss, BCE weight 0.02, Adam at 1e-3,
procedural 64^3 data with the paper's augmentations) at width 8 (3.1 M
parameters; about 12 MB on disk, still quick on a laptop's CPU) and batch
32, with more samples (140,000) and ``time_limit_s``: the run stops,
checkpointed, after 7 minutes of training, whatever ``total_steps`` says, so
that it fits a short lease of one GPU (the same command resumes it for
another 7 minutes). Then
``python -m experiments.export_model --workdir=DIR --out=MODEL_DIR
--config_name=gpu``. What it measured against the width-2 model: its model
card and ``docs/results.md``.
"""

from msftnet.configs.bundled import get_config as bundled_config


def get_config():
  c = bundled_config()
  c.width = 8
  c.batch_size = 32
  c.n_samples = 140_000
  c.total_steps = 50_000
  c.time_limit_s = 420.0
  c.data_threads = 4
  c.log_every = 100
  c.eval_every = 2000
  c.eval_batches = 4
  c.checkpoint_every = 1000
  c.keep_checkpoints = 1
  return c
