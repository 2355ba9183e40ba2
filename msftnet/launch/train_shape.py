r"""Train the shape network: class, size, stretch and orientation from a pattern.

  python -m experiments.train_shape --workdir=DIR [--steps=12000] [--width=16] \
      [--batch_size=32] [--cache_size=49152] [--time_limit_s=S] \
      [--export=MODEL_DIR] [--measured_fraction=F] [--init=MODEL_DIR]

Supervised on the procedural generator (``msftnet.shape_net``: a cache of
clean samples simulated once, half truncated; half of every batch through
the simulated-experiment filter with fresh noise), progress
with rate and ETA, validation lines in ``DIR/metrics.jsonl``. The same
command resumes from ``DIR/checkpoint.msgpack``; ``--export`` writes a model
directory (``variables.msgpack``, ``config.json``, ``MODEL_CARD.md`` with
the final validation figures) when training has finished.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging

from msftnet import records
from msftnet import shape_net

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.",
                               required=True)
_STEPS = flags.DEFINE_integer("steps", shape_net.TrainConfig.steps,
                              "Training steps.")
_WIDTH = flags.DEFINE_integer("width", shape_net.TrainConfig.width,
                              "Filters of the first convolution.")
_BATCH = flags.DEFINE_integer("batch_size", shape_net.TrainConfig.batch_size,
                              "Samples per step.")
_CACHE = flags.DEFINE_integer("cache_size", shape_net.TrainConfig.cache_size,
                              "Clean samples simulated once (DIR/cache/).")
_LR = flags.DEFINE_float("learning_rate", shape_net.TrainConfig.learning_rate,
                         "Peak learning rate (warm-up, cosine decay).")
_SEED = flags.DEFINE_integer("seed", shape_net.TrainConfig.seed,
                             "The generator's seed of the training samples.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every",
                                   shape_net.TrainConfig.eval_every,
                                   "Validate every N steps.")
_VAL_SIZE = flags.DEFINE_integer("validation_size",
                                 shape_net.TrainConfig.validation_size,
                                 "Validation samples.")
_LIMIT = flags.DEFINE_float("time_limit_s", 0.0, "Stop (checkpointed) after "
                            "this many seconds; the same command resumes.")
_MEASURED = flags.DEFINE_float(
    "measured_fraction", shape_net.TrainConfig.measured_fraction,
    "Fraction of every batch through the measured_image filter (like the "
    "paper's experimental images) instead.")
_INIT = flags.DEFINE_string("init", "", "A shape model directory to start "
                            "from (a fine-tune); default: from scratch.")
_EXPORT = flags.DEFINE_string("export", None, "Write a model directory here "
                              "once training has finished.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  try:
    config = shape_net.TrainConfig(
        width=_WIDTH.value, steps=_STEPS.value, batch_size=_BATCH.value,
        cache_size=_CACHE.value,
        learning_rate=_LR.value, seed=_SEED.value,
        eval_every=_EVAL_EVERY.value, validation_size=_VAL_SIZE.value,
        time_limit_s=_LIMIT.value, measured_fraction=_MEASURED.value,
        init_model=_INIT.value)
    shape_net.train(config, _WORKDIR.value)
    if _EXPORT.value:
      rows = records.read_jsonl(f"{_WORKDIR.value}/metrics.jsonl")
      val = [r for r in rows if r["split"] == "validation"]
      last = val[-1] if val else {}
      if last.get("step") != config.steps:
        logging.warning("training has not finished (step %s of %d): not "
                        "exported.", last.get("step"), config.steps)
        return
      card = shape_net.model_card(config, last,
                                  " ".join(sys.argv))
      shape_net.export(_WORKDIR.value, _EXPORT.value, card)
      logging.info("exported the shape model to %s", _EXPORT.value)
  except (ValueError, FloatingPointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
