r"""Does the trained network beat trivial baselines? Validation losses.

  python -m benchmarks.learning_evidence --workdir=workdirs/cpu \
      [--config=experiments/configs/cpu.py] [--batches=32] [--json_out=FILE]

On ``--batches`` validation batches of the config's procedural data (clean,
no augmentation; indices never seen in training), measures the physics
scatter loss (eq. 3), IoU at 0.5 and aligned IoU
(``msftnet.evaluation.shape_metrics``), the binary penalty and BCE of

* ``trained``: the latest checkpoint in ``WORKDIR/checkpoints``;
* ``untrained``: the same network at its initialisation (same seed);
* ``mean_density``: the best single constant object, the voxel-wise mean of
  the training targets over as many training samples, predicted for every
  input (also thresholded at 0.5, ``mean_density_binary``).

Prints one JSON line per model and a Markdown table.
"""

from __future__ import annotations

import json

from absl import app
from absl import flags
import grain
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from benchmarks.jsonlines import Report
from msftnet.paper_io import atomic_write
from msftnet import data
from msftnet import evaluation
from msftnet import losses
from msftnet import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/cpu.py", "The training config.")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/cpu", "Training workdir.")
_BATCHES = flags.DEFINE_integer("batches", 32, "Validation batches.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")
_CURVE_OUT = flags.DEFINE_string("curve_out", None,
                                 "Also draw the learning curve (PNG) from "
                                 "WORKDIR/metrics.jsonl with the baselines.")


def learning_curve(metrics_path, baselines: dict, out: str) -> None:
  """Train (running mean) and validation scatter loss against step."""
  from matplotlib.figure import Figure
  with open(metrics_path) as f:
    recs = [json.loads(line) for line in f]
  tr = [(r["step"], r["scatter"]) for r in recs if r["split"] == "train"]
  va = [(r["step"], r["scatter"]) for r in recs if r["split"] == "validation"]
  fig = Figure(figsize=(6.4, 4))
  ax = fig.subplots()
  steps, vals = np.array(tr).T
  k = 8
  smooth = np.convolve(vals, np.ones(k) / k, mode="valid")
  ax.plot(steps, vals, color="0.8", lw=0.8, label="train (logged steps)")
  ax.plot(steps[k - 1:], smooth, color="C0", label=f"train, mean of {k}")
  if va:
    ax.plot(*np.array(va).T, "o-", color="C1", label="validation")
  for (name, value), c in zip(baselines.items(), ("C3", "C2", "C4")):
    ax.axhline(value, ls="--", color=c, label=f"{name} (validation)")
  ax.set_xlabel("step")
  ax.set_ylabel("scatter loss (eq. 3)")
  ax.legend(fontsize=8)
  ax.set_title("CPU config: physics-informed training")
  fig.tight_layout()
  with atomic_write(out) as f:
    fig.savefig(f, format="png", dpi=110)


def _metrics(pred, batch, geometry) -> dict:
  """One batch: the evaluator's shape metrics (scatter loss, IoU, aligned
  IoU, volumes; their means) and the training losses' binary penalty and
  BCE."""
  pred = jnp.asarray(pred, jnp.float32)
  out = evaluation.summarize(evaluation.shape_metrics(
      pred, batch["density"], geometry, target_pattern=batch["loss_target"]))
  del out["samples"], out["scatter_sem"]
  out["binary"] = float(losses.binary_loss(pred))
  out["bce"] = float(losses.bce_loss(pred, batch["density"]))
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  geometry = train.training_geometry(config)
  dc = train.data_config(config)
  read = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
  val = data.procedural_dataset(dc, "validation", config.batch_size)
  n_batches = min(_BATCHES.value, len(val))
  batches = [b for _, b in zip(range(n_batches),
                               iter(val.to_iter_dataset(read)))]
  # The best constant object: mean of as many (clean) training targets.
  tr = data.procedural_dataset(dc, "train", config.batch_size, shuffle=True,
                               augmented=False)
  it = iter(tr.to_iter_dataset(read))
  mean = np.mean([next(it)["density"].mean(axis=0) for _ in range(n_batches)],
                 axis=0)
  trained = train.restore_state(f"{_WORKDIR.value}/checkpoints", config)
  untrained = train.create_train_state(config, jax.random.key(config.seed))

  def predictor(state):
    f = jax.jit(lambda p: state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats},
        p[..., None], train=False)[..., 0])
    return lambda b: f(jnp.asarray(b["pattern"]))

  models = {
      "trained": predictor(trained),
      "untrained": predictor(untrained),
      "mean_density": lambda b: np.broadcast_to(mean, b["density"].shape),
      "mean_density_binary": lambda b: np.broadcast_to(
          (mean > 0.5).astype(np.float32), b["density"].shape),
  }
  report = Report()
  for name, fn in models.items():
    per = [_metrics(fn(b), b, geometry) for b in batches]
    rec = {"model": name, "step": int(trained.step) if name == "trained" else 0,
           "samples": n_batches * config.batch_size,
           **{k: float(np.mean([m[k] for m in per])) for k in per[0]},
           "scatter_sem": float(np.std([m["scatter"] for m in per]) /
                                np.sqrt(len(per)))}
    report.add(rec)
  print("\n| model | validation scatter loss | IoU@0.5 | BCE |\n|---|---|---|---|")
  for r in report.records:
    print(f"| {r['model']} | {r['scatter']:.5f} +- {r['scatter_sem']:.5f} | "
          f"{r['iou']:.3f} | {r['bce']:.3f} |")
  report.write(_JSON_OUT.value)
  if _CURVE_OUT.value:
    learning_curve(f"{_WORKDIR.value}/metrics.jsonl",
                   {r["model"]: r["scatter"] for r in report.records
                    if r["model"] != "trained"}, _CURVE_OUT.value)


if __name__ == "__main__":
  app.run(main)
