r"""Export a trained network as a model directory with a model card.

  python -m experiments.export_model --workdir=workdirs/bundled \
      --out=msftnet/models/default [--step=N] [--eval_samples=256]

Reads the latest (or ``--step``) checkpoint of an ``experiments.train`` work
directory, measures the network on ``--eval_samples`` validation samples of
its own data config (``msftnet.evaluation.network_validation``: no
augmentation, and again with the simulated-experiment filter; scatter loss,
IoU, aligned IoU, occupied volumes); then writes ``variables/`` (params and batch statistics only),
``config.json`` and ``MODEL_CARD.md`` to ``--out`` (atomically).
"""

from __future__ import annotations

import os
import subprocess
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

from msftnet import evaluation
from msftnet import pretrained
from msftnet import records
from msftnet import train as train_lib

_WORKDIR = flags.DEFINE_string("workdir", None, "Training work directory.",
                               required=True)
_OUT = flags.DEFINE_string("out", None, "Model directory to write.",
                           required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default latest).")
_N = flags.DEFINE_integer("eval_samples", 256, "Validation samples.")
_BATCH = flags.DEFINE_integer("batch", 16, "Evaluation batch.")
_CONFIG_NAME = flags.DEFINE_string(
    "config_name", "bundled", "Name of the training config (for the card).")


CARD = """# Bundled model: `{name}`

The network `msftnet.reconstruct` uses by default: the encoder-decoder of
Stielow & Scheel (2021) at width {width} ({params:,} parameters, {size_kb:.0f} kB
on disk), trained on this repository's procedural data with
`experiments.train`. It gives the starting point of the reconstruction; the
MSFT refinement does the rest (see `msftnet/reconstruct.py`).

## How it was made

```
python -m experiments.train --config=experiments/configs/{config_name}.py --workdir={workdir}
python -m experiments.export_model --workdir={workdir} --out={out}
```

* steps: {step} (batch {batch}, {samples:,} samples seen), loss `{loss}`
  (binary weight {binary_weight}, BCE weight {bce_weight}), Adam at {lr};
* data: `msftnet.data` procedural solids (21 classes), {n_samples:,} samples
  (5:1 train/validation split, data seed {data_seed}), simulated at
  {resolution}^3, the paper's ten augmentations;
* hardware: {hardware}, {train_minutes} (from
  `metrics.jsonl`);
* code: git commit {commit}.

## Measured validation metrics (network alone)

{n_eval} validation samples of the same data config; scatter loss is eq. 3
(normalised log patterns at eps 100, 64^3 MSFT), IoU at 0.5, "aligned IoU"
the best IoU over translations and the inversion r -> -r (what a far-field
pattern cannot see), volumes as fractions of the box.

| input | scatter loss | IoU | aligned IoU | predicted volume | true volume |
|---|---|---|---|---|---|
{table}

## Limits

A width-{width} network trained for {step} steps ({hardware}). It gives
the refinement's start; the shapes come from the refinement against the
measured pattern (how the start matters: `docs/results.md`). The paper's
network (width 64, 63 h on 4 GPUs) is not reproduced here;
`experiments/configs/paper.py` trains it.
"""


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  try:
    model = pretrained.load_model(_WORKDIR.value, step=_STEP.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  config = ml_collections.ConfigDict(model.info)
  print(f"loaded step {model.info['step']} of {_WORKDIR.value}; evaluating",
        flush=True)
  val = evaluation.network_validation(
      model, train_lib.data_config(config), _N.value, _BATCH.value)
  minutes = "time not recorded"
  mpath = os.path.join(_WORKDIR.value, "metrics.jsonl")
  if os.path.exists(mpath):
    recs = records.read_jsonl(mpath)
    rates = [r["steps_per_s"] for r in recs if r.get("split") == "train"]
    if rates:
      steps = model.info["step"]
      minutes = (f"about {steps / np.mean(rates) / 60:.0f} minutes at a mean "
                 f"{np.mean(rates):.2f} steps/s")
  try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True,
                            check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    commit = "unknown"
  params = int(sum(np.size(x) for x in
                   jax.tree_util.tree_leaves(model.variables["params"])))
  table = "\n".join(
      f"| {name} | {m['scatter']:.5f} +- {m['scatter_sem']:.5f} | "
      f"{m['iou']:.3f} | {m['aligned_iou']:.3f} | {m['vol_pred']:.3f} | "
      f"{m['vol_true']:.3f} |" for name, m in val.items())
  info = {**model.info, "validation": val, "source_workdir": _WORKDIR.value,
          "commit": commit}
  card = CARD.format(
      name=os.path.basename(os.path.abspath(_OUT.value)), width=model.width,
      params=params, size_kb=params * 4 / 1024, config_name=_CONFIG_NAME.value,
      workdir=_WORKDIR.value, out=_OUT.value, step=model.info["step"],
      batch=config.batch_size,
      samples=model.info["step"] * config.batch_size, loss=config.loss,
      binary_weight=config.binary_weight, bce_weight=config.bce_weight,
      lr=config.learning_rate, n_samples=config.n_samples,
      data_seed=config.data_seed, resolution=config.resolution,
      train_minutes=minutes, commit=commit,
      hardware=model.info.get("hardware", "not recorded"), n_eval=val["clean"]["samples"],
      table=table)
  pretrained.save_model(_OUT.value, model.variables, info, card)
  print(f"wrote {_OUT.value} ({params:,} parameters)")
  print(table)


if __name__ == "__main__":
  app.run(main)
