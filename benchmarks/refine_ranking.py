r"""How the refinement picks among its candidates, on simulated test solids.

  python -m benchmarks.refine_ranking [--seed=777] [--n=12]
      [--beam_stop] [--model=DIR] [--json_out=FILE]

For ``--n`` truncated test solids of data seed ``--seed`` (clean simulated
patterns; with ``--beam_stop`` a beam stop of radius 6 px and a 4-column
detector gap are masked and zeroed), ``msftnet.reconstruct`` (bundled
model, default refinement) and the aligned IoU against the truth of:

* ``network``: the network's prediction;
* ``chosen``: the reconstruction (the candidates ranked by
  ``refine.trust.rank_candidates``: the affine-invariant objective, with
  implausible candidates last);
* ``lowest_masked``: the candidate with the lowest masked loss in the
  reported normalisation (``refine.measurement.pattern_losses``), the alternative
  ranking.

One JSON line per solid and a summary line (means, and how many solids the
two rankings choose differently).
"""

from __future__ import annotations

from absl import app
from absl import flags
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import data as data_lib
from msftnet import metrics
from msftnet import pretrained
from msftnet import reconstruct as recon
from msftnet.refine import measurement

_SEED = flags.DEFINE_integer("seed", 777, "Data seed of the test solids.")
_N = flags.DEFINE_integer("n", 12, "Test solids.")
_BEAM_STOP = flags.DEFINE_bool("beam_stop", False,
                               "Mask a beam stop and a detector gap.")
_MODEL = flags.DEFINE_string("model", None, "Model directory (default bundled).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def main(argv):
  del argv
  n = _N.value
  cfg = data_lib.DataConfig(n_samples=max(n, 6), seed=_SEED.value,
                            test_set=True)
  params = [data_lib.sample_params(cfg, i) for i in range(n)]
  batch = data_lib.simulate_batch(cfg, params, list(range(n)))
  truth = np.asarray(batch["density"])
  pats = np.asarray(batch["target"])
  vals = np.ones_like(pats, bool)
  if _BEAM_STOP.value:
    m = pats.shape[-1]
    r, c = np.mgrid[:m, :m] - m // 2
    bad = (r**2 + c**2 < 6**2) | ((c >= 20) & (c < 24))
    vals[:] = ~bad
    pats = np.where(vals, pats, 0.0)
  model = pretrained.load_model(_MODEL.value)
  g = model.geometry
  report = Report()
  rows = []
  for i in range(n):
    out = recon.reconstruct(pats[i], vals[i], model=model)
    cands = np.asarray(out.candidate_density)
    masked = [measurement.pattern_losses(d, pats[i], vals[i], g)[1] for d in cands]
    j = int(np.argmin(masked))
    row = {"benchmark": "refine_ranking", "seed": _SEED.value,
           "beam_stop": _BEAM_STOP.value, "model": _MODEL.value or "bundled",
           "solid": params[i].polyhedron,
           "network": metrics.aligned_iou(np.asarray(out.initial_density),
                                          truth[i]),
           "chosen": metrics.aligned_iou(cands[0], truth[i]),
           "lowest_masked": metrics.aligned_iou(cands[j], truth[i]),
           "rankings_differ": j != 0}
    rows.append(row)
    report.add(row)
  report.add({"benchmark": "refine_ranking", "summary": True,
              "seed": _SEED.value, "beam_stop": _BEAM_STOP.value, "n": n,
              "model": _MODEL.value or "bundled",
              **{f"mean_{k}": float(np.mean([r[k] for r in rows]))
                 for k in ("network", "chosen", "lowest_masked")},
              "rankings_differ": sum(r["rankings_differ"] for r in rows)})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
