r"""How deep along the beam the generator's solids are, against across it.

  python -m benchmarks.depth_ratio [--n=400] [--seed=900000] [--test_set]
      [--json_out=FILE]

``--n`` solids of ``msftnet.solids.sample_solid`` (seeds ``--seed`` ..
``--seed + n - 1``; truncated test solids with ``--test_set``) are
rasterised at 32^3, and ``msftnet.polytope.depth_log_ratio`` (the log of
the variance along z over the mean of those along y and x) is measured.
One JSON line: its spread and quantiles, what
``msftnet.refine.polytope.DEPTH_LIMIT`` is read from.
"""

from __future__ import annotations

from absl import app
from absl import flags
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import polytope
from msftnet import solids
from msftnet.raster import rasterize

_N = flags.DEFINE_integer("n", 400, "Solids.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 900000, "First solid's seed.")
_TEST_SET = flags.DEFINE_bool("test_set", True, "Truncated test solids.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")

_QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)


def main(argv):
  del argv
  ratios = []
  for i in range(_N.value):
    p = solids.sample_solid(_SEED.value + i, test_set=_TEST_SET.value)
    rho = np.asarray(rasterize(*solids.half_spaces(p), 32))
    if rho.sum() >= 5:               # a few voxels: no shape to measure
      ratios.append(float(polytope.depth_log_ratio(rho)))
  if not ratios:
    raise app.UsageError(f"--n={_N.value}: no solid covers 5 voxels at "
                         "32^3, expected at least one to measure.")
  x = np.asarray(ratios)
  report = Report()
  report.add({"benchmark": "depth_ratio", "seed": _SEED.value,
              "test_set": _TEST_SET.value, "solids": int(x.size),
              "std": round(float(x.std()), 4),
              "max": round(float(x.max()), 4),
              **{f"q{q:g}": round(float(np.quantile(x, q)), 4)
                 for q in _QUANTILES}})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
