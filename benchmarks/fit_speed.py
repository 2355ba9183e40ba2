r"""Forward fitting: the coarse-to-fine default against the full-problem fit.

  python -m benchmarks.fit_speed [--n=2] [--seed=20261125] [--experimental]
      [--configs=full,coarse-to-fine] [--json_out=FILE]

The configurations of ``msftnet.fitting.fit`` (all 20 classes) on the same
patterns, one after the other in one process: ``full`` is the former
default (4 starts x 80 Adam steps per class on the 64^3 -> 128^2 problem,
``coarse_steps=0``), ``coarse-to-fine`` the current default (4 starts x 80
steps per class on the coarse problem, then 30 full-problem steps for the 3
best classes); ``coarse-to-fine-40`` the same with 40 coarse steps;
``coarse-halving-K`` the default with successive halving in the coarse
stage (all 4 starts for 40 steps, the best K of each class for 40 more;
``FitConfig.coarse_survivors``). Patterns: ``--n`` simulated truncated test solids (data seed
``--seed``, clean, the paper's central-hole mask of radius 8 px) and, with
``--experimental``, the stored experimental pattern barke5 (the suite's
fixture). One JSON line per (pattern, config): wall seconds (the first
pattern's include compilation), the winning class, its paper-protocol loss
and, for simulated solids, the aligned IoU against the true 64^3 object.
"""

from __future__ import annotations

import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks.jsonlines import Report
import msftnet
from msftnet import data as data_lib
from msftnet import fitting
from msftnet import measured
from msftnet import metrics

_N = flags.DEFINE_integer("n", 2, "Simulated test solids.")
_SEED = flags.DEFINE_integer("seed", 20261125, "Data seed of the solids.")
_EXPERIMENTAL = flags.DEFINE_bool("experimental", True,
                                  "Also fit the experimental barke5.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"full": fitting.FitConfig(coarse_steps=0, steps=80),
           "coarse-to-fine": fitting.FitConfig(coarse_survivors=0),
           "coarse-to-fine-40": fitting.FitConfig(coarse_steps=40,
                                                  coarse_survivors=0),
           "coarse-halving-1": fitting.FitConfig(coarse_survivors=1),
           "coarse-halving-2": fitting.FitConfig(coarse_survivors=2)}
_CONFIGS = flags.DEFINE_list("configs", ["full", "coarse-to-fine"],
                             f"Some of {list(CONFIGS)}.")


def main(argv):
  del argv
  cases = []
  if _N.value:
    cfg = data_lib.DataConfig(n_samples=_N.value, seed=_SEED.value,
                              test_set=True)
    m = cfg.geometry.detector_px
    yy, xx = np.mgrid[:m, :m] - m // 2
    hole = (yy**2 + xx**2) >= 8**2
    for i in range(_N.value):
      p = data_lib.sample_params(cfg, i)
      s = data_lib.simulate_batch(cfg, [p], [i])
      cases.append((f"{p.polyhedron} (seed {_SEED.value}, #{i})",
                    s["target"][0], hole, s["density"][0]))
  if _EXPERIMENTAL.value:
    path = os.path.join(ROOT, "tests", "fixtures", "experiment", "barke5.png")
    pat, val = measured.load_measurement(path, experimental=True)
    cases.append(("barke5 (experimental)", pat, val, None))
  report = Report()
  for name in _CONFIGS.value:
    config = CONFIGS[name]
    for label, pattern, valid, truth in cases:
      t = time.perf_counter()
      out = fitting.fit(pattern, valid, config=config,
                        geometry=msftnet.Geometry())
      sec = time.perf_counter() - t
      report.add({
          "config": name, "pattern": label, "seconds": round(sec, 1),
          "best_class": out.best.polyhedron,
          "paper_loss": float(f"{out.best.paper_loss:.4e}"),
          "aligned_iou": (None if truth is None else round(
              float(metrics.aligned_iou(out.density, truth)), 3)),
          "backend": jax.default_backend()})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
