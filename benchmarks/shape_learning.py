r"""Can the shape network learn it? Short trainings on a small fixed set.

  python -m benchmarks.shape_learning [--n=4096] [--truncated=false]
      [--steps=1500] [--only=] [--json_out=FILE]

``--n`` clean samples of generator seed 11 (``msftnet.shape_net.simulate``;
``--truncated``: all truncated, else none) are simulated once and a width-16
``ShapeNet`` is trained on them for ``--steps`` steps of 32 (Adam 1e-3, the
training loss of ``msftnet.shape_net``); every 250 steps the class top-1 on
256 of its own training samples and the validation figures on 256 samples
of seed 12 (same kind) are reported. ``--only=orientation`` trains the
orientation term alone (the class, radius and stretch weights set to 0):
whether the symmetry-aware orientation loss is learnable at all.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import shape_net
from msftnet.geometry import Geometry

_N = flags.DEFINE_integer("n", 4096, "Training samples (simulated once).")
_TRUNC = flags.DEFINE_bool("truncated", False, "Truncated solids.")
_STEPS = flags.DEFINE_integer("steps", 1500, "Steps of 32 samples.")
_ONLY = flags.DEFINE_string("only", "", "Train one loss term alone.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def main(argv):
  del argv
  report = Report()
  g = Geometry()
  t = time.perf_counter()
  parts = [shape_net.simulate(11, np.arange(i, min(_N.value, i + 64)), g,
                              truncated=_TRUNC.value, filtered=False)
           for i in range(0, _N.value, 64)]
  data = {k: np.concatenate([p[k] for p in parts])
          for k in shape_net._BATCH_KEYS}
  val = shape_net.simulate(12, np.arange(256), g, truncated=_TRUNC.value,
                           filtered=False)
  own = {k: v[:256] for k, v in data.items()}
  print(f"simulated in {time.perf_counter() - t:.0f} s", flush=True)
  if _ONLY.value:
    for k in shape_net._WEIGHTS:
      shape_net._WEIGHTS[k] = 1.0 if k == _ONLY.value else 0.0
  config = shape_net.TrainConfig(steps=_STEPS.value)
  net, tx, state = shape_net._init(config, g)
  rng = np.random.default_rng(0)
  t = time.perf_counter()
  for step in range(1, config.steps + 1):
    idx = rng.integers(0, _N.value, config.batch_size)
    state, _ = shape_net._train_step(state, {k: v[idx] for k, v in
                                             data.items()}, net=net, tx=tx)
    if step % 250 == 0 or step == config.steps:
      v = shape_net.evaluate(net, state[0], val, g)
      report.add({"n": _N.value, "truncated": _TRUNC.value,
                  "only": _ONLY.value or "all", "step": step,
                  "seconds": round(time.perf_counter() - t),
                  "train_top1": shape_net.evaluate(net, state[0], own,
                                                   g)["top1"],
                  **{f"val_{k}": round(x, 4) for k, x in v.items()}})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
