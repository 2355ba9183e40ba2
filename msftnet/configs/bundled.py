r"""The model bundled with the package (``msftnet/models/default``).

  python -m experiments.train --config=experiments/configs/bundled.py \
      --workdir=workdirs/bundled
  python -m experiments.export_model --workdir=workdirs/bundled \
      --out=msftnet/models/default

The CPU config (width 2, 0.19 M parameters, batch 8, procedural 64^3 data
with the paper's augmentations) with the hybrid loss (physics loss + 0.02
voxel BCE) run for 1600 steps on the 2-core development machine. Why hybrid:
the physics loss alone at this width and budget learned a nearly constant
ball (the CPU run of benchmarks/RESULTS.md, "Evidence it learns"), which is
a poor starting point for the refinement; the BCE term, weighted to be of
the scatter loss's magnitude, supervises the size directly. Its measured
validation metrics are in ``msftnet/models/default/MODEL_CARD.md``. The network only gives the starting
point; ``msftnet.reconstruct`` refines it against the measured pattern.
"""

from msftnet.configs.cpu import get_config as cpu_config


def get_config():
  c = cpu_config()
  c.loss = "hybrid"
  c.bce_weight = 0.02
  c.total_steps = 1600
  c.eval_every = 600
  c.eval_batches = 16
  c.checkpoint_every = 200
  c.keep_checkpoints = 2
  return c
