r"""The centre searches side by side, on patterns whose centre is known.

  python -m benchmarks.centre_search [--n=96] [--seed=S] [--gains=0,0.05,...]
      [--json_out=FILE]

``--n`` truncated test solids (64^3, ``DataConfig(test_set=True)``, data
seed ``--seed``) are simulated and searched (``max_shift`` 10) by each of

* ``symmetry40``: the point-symmetry score of the pixel pairs within 40 px
  (``centre.find_centres(radius=40, rings=False)``, the former default);
* ``symmetry20``: the same within 20 px;
* ``rings``: ``centre.ring_centre`` (the variance along rings);
* ``default``: ``centre.find_centres`` as the reconstruction calls it (the
  symmetry within 20 px and the rings, ``centre.centre_scores``).

Inputs, one JSON line per input and search (with ``min_gain`` for the
``find_centres`` searches on the first two inputs, one line per
``--gains`` value): the fraction found exactly, within 1 px and more than
2 px off:

* ``clean``: each pattern as it is (centred: the right answer is no shift;
  ``centred_left_in_place``) and moved by a random shift within +-5 px per
  axis (edges moved in invalid);
* ``shot_noise``: the same through the paper's shot-noise filter;
* ``simulated_experiment``: the paper's whole filter (shot noise on the log
  pattern, two shifts of up to 5 px, blind spot, saturation, beam stop,
  crop; key ``fold_in(key(seed * 1000 + 7), i)``), whose centre is known
  (``augment.simulated_experiment_offset``); for the default search also
  where the first k ``centre.centre_candidates`` (k = 2..6) hold one within
  1 px (what a choice among them by the fit can reach);
* ``cxi``: the trust benchmark's raw-count CXI run of the same solids
  (``benchmarks.simulated_runs.cxi_run``: Poisson counts with 1e3-1e5
  photons at the peak, dark counts, a beam stop and a gap in the mask, the
  beam off by up to 4 px), read by ``msftnet.measured.load_many``.
"""

from __future__ import annotations

import os
import tempfile

from absl import app
from absl import flags
import jax
import numpy as np

import msftnet
from benchmarks.jsonlines import Report
from benchmarks.simulated_runs import cxi_run
from msftnet import augment
from msftnet import centre
from msftnet import data as data_lib
from msftnet import measured

_N = flags.DEFINE_integer("n", 96, "Test solids.")
_SEED = flags.DEFINE_integer("seed", 31, "Data seed.")
_GAINS = flags.DEFINE_list("gains", ["0"], "min_gain values.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")

#: The searches compared: ``find_centres`` keyword arguments, or None for
#: ``ring_centre``.
SEARCHES = {"symmetry40": dict(radius=40, rings=False),
            "symmetry20": dict(radius=20, rings=False),
            "rings": None,
            "default": {}}


def _search(name, patterns, valid, min_gain=0.0) -> np.ndarray:
  kw = SEARCHES[name]
  if kw is None:
    vs = [None] * len(patterns) if valid is None else valid
    return np.asarray([centre.ring_centre(p, v)
                       for p, v in zip(patterns, vs)])
  return centre.find_centres(patterns, valid, min_gain=min_gain, **kw)


def _rates(found, truth) -> dict:
  err = np.abs(np.asarray(found) - np.asarray(truth)).max(axis=1)
  return {"found_exactly": float(np.mean(err == 0)),
          "within_1px": float(np.mean(err <= 1)),
          "off_by_more_than_2px": float(np.mean(err > 2))}


def main(argv):
  del argv
  n, seed = _N.value, _SEED.value
  geometry = msftnet.Geometry()
  cfg = data_lib.DataConfig(n_samples=n, seed=seed, resolution=64,
                            test_set=True)
  params = [data_lib.sample_params(cfg, i) for i in range(n)]
  sim = data_lib.simulate_batch(cfg, params, list(range(n)))
  clean = np.asarray(sim["pattern"])
  noisy = np.asarray(augment.apply_filter_batch(
      "shot_noise", jax.random.key(seed), clean)[0])
  rng = np.random.default_rng(seed)
  shifts = rng.integers(-5, 6, size=(n, 2))
  shifts[np.all(shifts == 0, axis=1)] = (1, -2)
  report = Report()
  base = {"benchmark": "centre_search", "n": n, "seed": seed}
  for label, pats in (("clean", clean), ("shot_noise", noisy)):
    moved = [centre.shift_pattern(p, None, -s) for p, s in zip(pats, shifts)]
    mp = np.stack([m[0] for m in moved])
    mv = np.stack([m[1] for m in moved])
    for name, kw in SEARCHES.items():
      for gain in ([float(g) for g in _GAINS.value] if kw is not None
                   else [0.0]):
        still = _search(name, pats, None, gain)
        report.add({**base, "input": label, "search": name, "min_gain": gain,
                    "centred_left_in_place": float(np.mean(
                        np.all(still == 0, axis=1))),
                    **_rates(_search(name, mp, mv, gain), shifts)})
  # The whole simulated-experiment filter.
  keys = [jax.random.fold_in(jax.random.key(seed * 1000 + 7), i)
          for i in range(n)]
  filtered = [augment.apply_filter("simulated_experiment", k, p)
              for k, p in zip(keys, clean)]
  fp = np.stack([np.asarray(p) for p, _ in filtered])
  fv = np.stack([np.asarray(v) for _, v in filtered])
  truth = np.stack([augment.simulated_experiment_offset(k) for k in keys])
  for name in SEARCHES:
    row = {**base, "input": "simulated_experiment", "search": name,
           **_rates(_search(name, fp, fv), truth)}
    if name == "default":
      near = lambda cands, t: any(max(abs(a - t[0]), abs(b - t[1])) <= 1
                                  for a, b in cands)
      cands = [centre.centre_candidates(p, v, k=6) for p, v in zip(fp, fv)]
      for k in range(2, 7):
        row[f"candidates{k}_within_1px"] = float(np.mean(
            [near(c[:k], t) for c, t in zip(cands, truth)]))
    report.add(row)
  # The raw-count CXI run.
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "run.cxi")
    made = cxi_run(path, np.asarray(sim["density"]), geometry, seed)
    frames, errors = measured.load_many([path], geometry=geometry)
    if errors:
      raise SystemExit(errors[0][1])
  cp = np.stack([f.pattern for f in frames])
  cv = np.stack([f.valid for f in frames])
  offsets = np.asarray([m["beam_offset_px"] for m in made])
  for name in SEARCHES:
    report.add({**base, "input": "cxi", "search": name,
                **_rates(_search(name, cp, cv), offsets)})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
