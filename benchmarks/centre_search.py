r"""How often the centre search moves a centred pattern, and finds a shift.

  python -m benchmarks.centre_search [--n=40] [--seed=S]
      [--gains=0,0.05,0.1,0.2,0.3] [--json_out=FILE]

``--n`` truncated test solids (64^3, ``DataConfig(test_set=True)``, data
seed ``--seed``) are simulated; each pattern is searched (``max_shift`` 10,
``msftnet.centre.find_centres``) as it is (centred: the right answer is no
shift) and moved by a random shift within +-5 px per axis (edges moved in
invalid), both clean and with the paper's shot-noise filter. One JSON line
per ``min_gain``: the fraction of centred patterns left in place and of
shifted ones whose shift is found exactly.

Then the same solids through the paper's whole simulated-experiment filter
(shot noise on the log pattern, two shifts of up to 5 px, blind spot,
saturation, beam stop, crop; key ``fold_in(key(seed * 1000 + 7), i)``),
whose centre offset is known (``augment.simulated_experiment_offset``): one
JSON line with the fraction where the symmetry search lands within 1 px,
and where ``msftnet.centre.centre_candidates`` (k = 2..6) holds a
candidate within 1 px (what a choice among them by the fit can reach).
"""

from __future__ import annotations

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import augment
from msftnet import centre
from msftnet import data as data_lib

_N = flags.DEFINE_integer("n", 40, "Test solids.")
_SEED = flags.DEFINE_integer("seed", 31, "Data seed.")
_GAINS = flags.DEFINE_list("gains", ["0", "0.05", "0.1", "0.2", "0.3"],
                           "min_gain values.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def main(argv):
  del argv
  cfg = data_lib.DataConfig(n_samples=_N.value, seed=_SEED.value,
                            resolution=64, test_set=True)
  params = [data_lib.sample_params(cfg, i) for i in range(_N.value)]
  clean = np.asarray(data_lib.simulate_batch(
      cfg, params, list(range(_N.value)))["pattern"])
  noisy = np.asarray(augment.apply_filter_batch(
      "shot_noise", jax.random.key(_SEED.value), clean)[0])
  rng = np.random.default_rng(_SEED.value)
  shifts = rng.integers(-5, 6, size=(_N.value, 2))
  shifts[np.all(shifts == 0, axis=1)] = (1, -2)
  report = Report()
  for label, pats in (("clean", clean), ("shot_noise", noisy)):
    moved = [centre.shift_pattern(p, None, -s) for p, s in zip(pats, shifts)]
    mp = np.stack([m[0] for m in moved])
    mv = np.stack([m[1] for m in moved])
    for gain in (float(g) for g in _GAINS.value):
      still = centre.find_centres(pats, None, min_gain=gain)
      found = centre.find_centres(mp, mv, min_gain=gain)
      report.add({"benchmark": "centre_search", "input": label,
                  "min_gain": gain, "n": _N.value, "seed": _SEED.value,
                  "centred_left_in_place": float(np.mean(
                      np.all(still == 0, axis=1))),
                  "shift_found_exactly": float(np.mean(
                      np.all(found == shifts, axis=1))),
                  "shift_found_within_1px": float(np.mean(
                      np.abs(found - shifts).max(axis=1) <= 1))})
  # The whole simulated-experiment filter.
  keys = [jax.random.fold_in(jax.random.key(_SEED.value * 1000 + 7), i)
          for i in range(_N.value)]
  filtered = [augment.apply_filter("simulated_experiment", k, p)
              for k, p in zip(keys, clean)]
  truth = np.stack([augment.simulated_experiment_offset(k) for k in keys])
  near = lambda cands, t: any(max(abs(a - t[0]), abs(b - t[1])) <= 1
                              for a, b in cands)
  cands = [centre.centre_candidates(np.asarray(p), np.asarray(v), k=6)
           for p, v in filtered]
  row = {"benchmark": "centre_search", "input": "simulated_experiment",
         "n": _N.value, "seed": _SEED.value,
         "search_within_1px": float(np.mean([near(c[:1], t)
                                             for c, t in zip(cands, truth)]))}
  for k in range(2, 7):
    row[f"candidates{k}_within_1px"] = float(np.mean(
        [near(c[:k], t) for c, t in zip(cands, truth)]))
  report.add(row)
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
