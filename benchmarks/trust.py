r"""Trust: accuracy, confidence and flags of reconstructions on held-out data.

  python -m benchmarks.trust --seed=S [--sets=simexp,cxi,nonconvex,clean,experiment]
      [--n=24] [--n_clean=8] [--out=DIR] [--refine=FIELD=VALUE,...]
      [--json_out=FILE]
  python -m benchmarks.trust --calibrate=TUNE.jsonl[,MORE.jsonl] [--evaluate=TEST.jsonl]
      [--figure=docs/confidence_reliability.png]

Reconstruction mode: the bundled model and the default refinement (or
``--refine``) on the sets, one JSON line per pattern (set, aligned IoU
against the truth, ``confidence``, its reasons, whether the result carries
a ``reconstruction_warning`` as ``msftnet reconstruct`` writes it, the
trust signals, seconds) and one summary line per set:

* ``simexp``: ``--n`` truncated test solids (``evaluation.testset_source``,
  192^3 simulations, data seed ``--seed``) through the paper's
  simulated-experiment filter (``augment.evaluation_input``); each row
  holds the filter's centre offset (``true_centre``);
* ``clean``: the first ``--n_clean`` of them, unfiltered;
* ``cxi``: ``--n`` other truncated test solids (data seed ``--seed + 1``,
  64^3) as one raw-count CXI run: Poisson counts with 1e3-1e5 photons at
  the brightest pixel (log-uniform), Poisson dark counts (mean 0.05 per
  pixel), a beam stop and a detector gap in the CXI mask, the beam centre off
  by up to 4 px per axis (the rows wrapped in by the shift masked), read by
  ``msftnet.measured.load_many``;
* ``nonconvex``: eight clean patterns of touching bodies (sphere and cube
  dimers, an unequal dimer, a trimer, a dumbbell, a sphere-cube pair, L and
  T shapes), randomly oriented, dark level 1e-4;
* ``noparticle``: eight patterns with no particle in them (uniform noise,
  with and without a beam stop; Poisson counts of a flat background;
  smoothed noise; hot pixels on a noisy floor): the truth is an empty
  volume, so any body is wrong (aligned IoU 0) and should be flagged;
* ``experiment``: ``barke1/3/5/7`` (``--experiment_dir``); no truth: the
  best sphere's loss over the reconstruction's in the paper's protocol with
  the dark level at most 1e-3 of the peak and the best centre within
  +-10 px for both (``protocol_losses``).

``--oracle_centre`` moves each simexp pattern by the filter's known centre
offset (``augment.simulated_experiment_offset``) before reconstructing it:
with ``--refine=centre_search=0,centre_candidates=1`` what a perfect centre
search would give.

Calibration mode: fits the logistic confidence model
(``msftnet.refine.trust.features`` -> P(aligned IoU >= 0.5), L2-regularised
Newton) on the rows of the ``--calibrate`` files and prints the weights for
``trust.CONFIDENCE_WEIGHTS``; with ``--evaluate``, the flag rates and a
reliability table (and ``--figure``) on those held-out rows with the
weights now in ``trust.CONFIDENCE_WEIGHTS``.
"""

from __future__ import annotations

import os
import tempfile
import time

from absl import app
from absl import flags
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

import msftnet
from benchmarks.jsonlines import Report
from benchmarks.simulated_runs import cxi_run
from msftnet import augment
from msftnet import data as data_lib
from msftnet import evaluation
from msftnet import measured
from msftnet import metrics
from msftnet import pretrained
from msftnet import records
from msftnet import reconstruct as recon
from msftnet import runs
from msftnet.launch.refine_flags import parse_refine_config
from msftnet.raster import sphere_density
from msftnet.refine import measurement as meas
from msftnet.refine import trust

_SEED = flags.DEFINE_integer("seed", 20261207, "Data seed of the sets.")
_SETS = flags.DEFINE_list("sets", ["simexp", "cxi", "nonconvex", "noparticle",
                                   "clean",
                                   "experiment"], "Sets to reconstruct.")
_N = flags.DEFINE_integer("n", 24, "Solids of the simexp and cxi sets.")
_N_CLEAN = flags.DEFINE_integer("n_clean", 8, "Solids of the clean set.")
_OUT = flags.DEFINE_string("out", None, "Work folder (the 192^3 test set); "
                           "default a temporary one.")
_REFINE = flags.DEFINE_string("refine", "", "RefineConfig fields.")
_EXP_DIR = flags.DEFINE_string("experiment_dir", "../shared/data/experiment",
                               "Folder with barke*.png.")
_ORACLE_CENTRE = flags.DEFINE_bool(
    "oracle_centre", False, "simexp: move each pattern by the "
    "filter's known centre offset first (an upper bound of what a centre "
    "search can give; pair with --refine=centre_search=0).")
_CENTRE_ERRORS = flags.DEFINE_string(
    "centre_errors", None, "Rows of a simexp run of --seed (and --out): "
    "print how far each chosen centre lies from the filter's known one, and "
    "the aligned IoU of the right and wrong ones, instead of reconstructing.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")
_CALIBRATE = flags.DEFINE_list("calibrate", None, "Fit the confidence model "
                               "on the rows of these files instead.")
_EVALUATE = flags.DEFINE_list("evaluate", None, "Files of held-out rows to "
                              "report the confidence on.")
_FIGURE = flags.DEFINE_string("figure", None, "Reliability figure (PNG).")
_CV = flags.DEFINE_bool("cv", False, "Calibration mode: also fit on all "
                        "--calibrate files but one and score the one left "
                        "out, for each (leave-one-file-out), with the "
                        "features alone and with each of --cv_extra added.")
_RESIDUAL_GRID = flags.DEFINE_list(
    "residual_grid", None, "Calibration mode: the flag rates on the "
    "--calibrate rows (with the weights fitted there) for each structured-"
    "residual rule FRACTION/TIMES_NOISE, e.g. 0.1/10,0.06/7.")
_CV_EXTRA = flags.DEFINE_list("cv_extra", ["retried"], "Candidate features "
                              "for --cv (CANDIDATE_FEATURES; A+B adds both; "
                              "-NAME leaves out a feature of trust.FEATURES).")

#: Features tried beside ``trust.features`` by ``--cv`` (not used by the
#: confidence unless they win and move into ``trust.features``).
CANDIDATE_FEATURES = {
    "retried": lambda sig: float(sig.get("centres_tried", 1) > 1),
    # Rows made before these were recorded, or not retried: as if the
    # centre were certain.
    "centre_agreement": lambda sig: sig.get("centre_agreement", 1.0),
    "centre_margin": lambda sig: min(sig.get("centre_margin", 1.0), 1.0),
    "excess_unexplained": lambda sig: (sig["unexplained_fraction"]
                                       - sig["noise_fraction"]),
    "valid_fraction": lambda sig: sig.get("valid_fraction", 1.0),
    "excess_squared": lambda sig: max(sig["unexplained_fraction"]
                                      - sig["noise_fraction"], 0.0) ** 2,
    "excess_over_unexplained": lambda sig: (
        (sig["unexplained_fraction"] - sig["noise_fraction"])
        / max(sig["unexplained_fraction"], 1e-6)),
    # The fringe estimate of a large body often finds every other fringe
    # (a ball of half its radius): the size's distance to 1x or 2x.
    "size_alias": lambda sig: min(abs(sig["size_log_ratio"]),
                                  abs(sig["size_log_ratio"] - np.log(2.0))),
}

_EXPERIMENTS = ("barke1", "barke3", "barke5", "barke7")


# ------------------------------------------------------------- the inputs
def _coords(n: int):
  c = (np.arange(n) - (n - 1) / 2) / n
  return np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)   # [N,N,N,3]


def _ball(x, centre, r, n):
  d = np.linalg.norm(x - np.asarray(centre), axis=-1)
  return np.clip(0.5 - (d - r) * n, 0.0, 1.0)


def _box(x, centre, half, n):
  d = np.max(np.abs(x - np.asarray(centre)) - np.asarray(half), axis=-1)
  return np.clip(0.5 - d * n, 0.0, 1.0)


def _rod(x, a, b, r, n):
  a, b = np.asarray(a), np.asarray(b)
  t = np.clip(((x - a) @ (b - a)) / ((b - a) @ (b - a)), 0.0, 1.0)
  d = np.linalg.norm(x - (a + t[..., None] * (b - a)), axis=-1)
  return np.clip(0.5 - (d - r) * n, 0.0, 1.0)


def nonconvex_bodies(n: int = 64, seed: int = 0) -> list[tuple[str, np.ndarray]]:
  """Eight non-convex particles ``[N, N, N]`` (box units, randomly oriented)."""
  rng = np.random.default_rng(seed)
  shapes = {
      "sphere_dimer": lambda x: np.maximum(_ball(x, (0, 0, -0.12), 0.12, n),
                                           _ball(x, (0, 0, 0.12), 0.12, n)),
      "unequal_dimer": lambda x: np.maximum(
          _ball(x, (0, 0, -0.09), 0.14, n), _ball(x, (0, 0, 0.14), 0.09, n)),
      "cube_dimer": lambda x: np.maximum(
          _box(x, (0, 0, -0.09), (0.09, 0.09, 0.09), n),
          _box(x, (0, 0.03, 0.09), (0.09, 0.09, 0.09), n)),
      "trimer": lambda x: np.maximum.reduce(
          [_ball(x, (0, 0.11 * np.cos(a), 0.11 * np.sin(a)), 0.1, n)
           for a in (0.0, 2.1, 4.2)]),
      "dumbbell": lambda x: np.maximum.reduce(
          [_ball(x, (0, 0, -0.17), 0.1, n), _ball(x, (0, 0, 0.17), 0.1, n),
           _rod(x, (0, 0, -0.17), (0, 0, 0.17), 0.045, n)]),
      "sphere_cube": lambda x: np.maximum(
          _ball(x, (0, 0, -0.11), 0.11, n),
          _box(x, (0, 0, 0.08), (0.08, 0.08, 0.08), n)),
      "L_shape": lambda x: np.maximum(
          _box(x, (0, 0, -0.05), (0.06, 0.06, 0.2), n),
          _box(x, (0, 0.12, -0.19), (0.06, 0.12, 0.06), n)),
      "T_shape": lambda x: np.maximum(
          _box(x, (0, 0, 0.0), (0.06, 0.06, 0.2), n),
          _box(x, (0, 0.13, 0.0), (0.06, 0.13, 0.06), n)),
  }
  x = _coords(n)
  out = []
  for name, f in shapes.items():
    rot = Rotation.random(random_state=rng).as_matrix()
    out.append((name, f(x @ rot).astype(np.float32)))
  return out


def noparticle_patterns(m: int = 128, seed: int = 0
                        ) -> list[tuple[str, np.ndarray, np.ndarray]]:
  """Eight ``(name, pattern [M, M] in [0, 1], valid)`` with no particle."""
  from scipy import ndimage
  rng = np.random.default_rng([seed, 7])
  r, c = np.meshgrid(np.arange(m) - m // 2, np.arange(m) - m // 2,
                     indexing="ij")
  stop = np.hypot(r, c) > 6

  def norm(x):
    x = np.asarray(x, np.float64)
    return ((x - x.min()) / max(np.ptp(x), 1e-12)).astype(np.float32)

  counts = lambda lam: np.log1p(rng.poisson(lam, (m, m)))
  floor = rng.poisson(2.0, (m, m)).astype(float)
  floor[rng.random((m, m)) < 0.002] = 1e4
  out = [("uniform_noise", norm(rng.random((m, m))), np.ones((m, m), bool)),
         ("uniform_noise_beam_stop", norm(rng.random((m, m)) * stop), stop),
         ("flat_counts_10", norm(counts(10.0)), np.ones((m, m), bool)),
         ("flat_counts_100", norm(counts(100.0)), np.ones((m, m), bool)),
         ("smoothed_noise_1px", norm(ndimage.gaussian_filter(
             rng.standard_normal((m, m)), 1.0)), np.ones((m, m), bool)),
         ("smoothed_noise_3px", norm(ndimage.gaussian_filter(
             rng.standard_normal((m, m)), 3.0)), np.ones((m, m), bool)),
         ("hot_pixels", norm(np.log1p(floor)), np.ones((m, m), bool)),
         ("hot_pixels_beam_stop", norm(np.log1p(floor) * stop), stop)]
  return [(n, np.where(v, p, 0.0).astype(np.float32), v) for n, p, v in out]


def _shifted(pattern, valid, max_shift: int):
  """Every integer re-centring within ``max_shift`` px: ``(P, V)``, each
  ``[K, M * M]`` (:func:`msftnet.centre.shift_pattern`)."""
  ps, vs = [], []
  for dy in range(-max_shift, max_shift + 1):
    for dx in range(-max_shift, max_shift + 1):
      p, v = msftnet.centre.shift_pattern(pattern, valid, (dy, dx))
      ps.append(p.ravel())
      vs.append(v.ravel())
  return np.asarray(ps, np.float64), np.asarray(vs, np.float64)


def protocol_losses(densities, pattern, valid, geometry, *,
                    max_shift: int = 10, max_dark_log10: float = -3.0
                    ) -> np.ndarray:
  """The paper's protocol loss (mean over all pixels, zero difference off
  ``valid``) of each of ``densities [S, N, N, N]`` against a measured
  pattern, the best over dark levels of :data:`meas.DARK_GRID` up to
  ``max_dark_log10`` and over integer centre shifts within ``max_shift``
  px: ``[S]``."""
  big_p, big_v = _shifted(pattern, valid, max_shift)
  data_term = (big_v * big_p**2).sum(axis=1)                  # [K]
  us = jnp.asarray([u for u in meas.DARK_GRID if u <= max_dark_log10],
                   jnp.float32)
  out = []
  for rho in np.asarray(densities, np.float32):
    inten = msftnet.intensity(jnp.asarray(rho)[None], geometry)[0]
    sims = np.asarray(meas.log_with_dark(inten[None], us[:, None, None]),
                      np.float64).reshape(len(us), -1)         # [U, M*M]
    loss = ((sims**2) @ big_v.T - 2 * sims @ (big_v * big_p).T
            + data_term) / sims.shape[1]
    out.append(float(loss.min()))
  return np.asarray(out)


def best_sphere_loss(pattern, valid, geometry) -> tuple[float, float]:
  """The ball with the lowest :func:`protocol_losses`: ``(radius, loss)``."""
  radii = np.geomspace(0.03, 0.45, 40)
  balls = np.asarray(sphere_density(geometry.n_voxels,
                                    jnp.asarray(radii, jnp.float32)))
  loss = protocol_losses(balls, pattern, valid, geometry)
  return float(radii[np.argmin(loss)]), float(loss.min())


# ---------------------------------------------------------------- the run
def _row(out, set_name, name, truth, seconds, extra=None):
  row = {"benchmark": "trust", "set": set_name, "name": name,
         "confidence": round(float(out.confidence[0]), 4),
         "confidence_reasons": list(out.confidence_reasons[0]),
         "flagged": runs.warning_of(out, 0) is not None,
         "signals": out.signals[0], "start": str(out.start_name[0]),
         "centre_shift": [int(x) for x in out.centre_shift[0]],
         "dark_level_log10": float(out.dark_level[0]),
         "paper_loss": float(out.paper_loss_after[0]),
         "seconds": round(seconds, 2), **(extra or {})}
  if truth is not None:
    row["aligned_iou"] = round(metrics.aligned_iou(out.density[0], truth), 4)
  return row


def _reconstruct(model, config, pattern, valid, photons=None):
  t = time.perf_counter()
  out = recon.reconstruct(np.asarray(pattern)[None], np.asarray(valid)[None],
                          model=model, config=config, photons=[photons])
  return out, time.perf_counter() - t


def _inputs(seed: int, sets, tmp):
  """``(set, name, pattern, valid, truth, extra)`` of every input."""
  g = msftnet.Geometry()
  if {"simexp", "clean"} & set(sets):
    s = evaluation.Settings(out=tmp, n_test=max(_N.value, _N_CLEAN.value),
                            test_seed=seed, progress=False)
    src = evaluation.testset_source(s)
    for cond, set_name, n in (("simulated_experiment", "simexp", _N.value),
                              ("clean", "clean", _N_CLEAN.value)):
      if set_name not in sets:
        continue
      for i in range(n):
        rec = src[i]
        p, v = augment.evaluation_input(rec["pattern"], int(rec["index"]),
                                        cond)
        extra = None
        if cond == "simulated_experiment":
          offset = augment.simulated_experiment_offset(
              augment.evaluation_key(int(rec["index"])))
          extra = {"true_centre": [int(x) for x in offset]}
          if _ORACLE_CENTRE.value:
            p, v = msftnet.centre.shift_pattern(p, v, offset)
            extra = {"true_centre": [0, 0]}
        yield (set_name, src.rows[i]["polyhedron"], p, v, rec["density"],
               extra)
  if "cxi" in sets:
    cfg = data_lib.DataConfig(n_samples=_N.value, seed=seed + 1,
                              resolution=64, test_set=True)
    params = [data_lib.sample_params(cfg, i) for i in range(_N.value)]
    truth = data_lib.simulate_batch(cfg, params, list(range(_N.value)))[
        "density"]
    truth = np.asarray(truth)
    run = os.path.join(tmp, "run.cxi")
    made = cxi_run(run, truth, g, seed)
    frames, errors = measured.load_many([run], geometry=g)
    if errors:
      raise SystemExit(errors[0][1])
    for k, fr in enumerate(frames):
      yield ("cxi", params[k].polyhedron, fr.pattern, fr.valid, truth[k],
             dict(made[k], photons=measured.photons_of(fr.info)))
  if "nonconvex" in sets:
    for name, vol in nonconvex_bodies(g.n_voxels, seed):
      p = np.asarray(meas.simulate_with_dark_level(
          jnp.asarray(vol)[None], g, jnp.asarray([-4.0])))[0]
      yield ("nonconvex", name, p, np.ones_like(p, bool), vol, None)
  if "noparticle" in sets:
    empty = np.zeros((g.n_voxels,) * 3, np.float32)
    for name, p, v in noparticle_patterns(g.detector_px, seed):
      yield ("noparticle", name, p, v, empty, None)
  if "experiment" in sets:
    for stem in _EXPERIMENTS:
      path = os.path.join(_EXP_DIR.value, f"{stem}.png")
      p, v = measured.load_measurement(path, experimental=True)
      yield ("experiment", stem, p, v, None, None)


def _summaries(rows) -> list[dict]:
  out = []
  for set_name in dict.fromkeys(r["set"] for r in rows):
    rs = [r for r in rows if r["set"] == set_name]
    s = {"benchmark": "trust", "summary": True, "set": set_name, "n": len(rs),
         "seconds_per_pattern": round(float(np.mean([r["seconds"]
                                                     for r in rs])), 2),
         "flagged": int(sum(r["flagged"] for r in rs))}
    if "aligned_iou" in rs[0]:
      iou = np.asarray([r["aligned_iou"] for r in rs])
      flag = np.asarray([r["flagged"] for r in rs])
      s.update(median_aligned_iou=round(float(np.median(iou)), 4),
               mean_aligned_iou=round(float(iou.mean()), 4),
               below_05=int((iou < 0.5).sum()),
               below_05_flagged=int((flag & (iou < 0.5)).sum()),
               above_07=int((iou >= 0.7).sum()),
               above_07_flagged=int((flag & (iou >= 0.7)).sum()),
               right_or_flagged=int(((iou >= 0.5) | flag).sum()))
    if "sphere_over_reconstruction" in rs[0]:
      ratio = [r["sphere_over_reconstruction"] for r in rs]
      s.update(min_ratio=round(min(ratio), 3),
               median_ratio=round(float(np.median(ratio)), 3))
    out.append(s)
  return out


def centre_errors(path: str) -> dict:
  """How far the chosen centres of the simexp rows in ``path`` (a run of
  ``--seed``) lie from the filter's known ones, and what it cost."""
  with tempfile.TemporaryDirectory() as tmp:
    s = evaluation.Settings(out=_OUT.value or tmp, n_test=_N.value,
                            test_seed=_SEED.value, progress=False)
    src = evaluation.testset_source(s)
    rows = [r for r in records.read_jsonl(path)
            if r.get("set") == "simexp" and "aligned_iou" in r]
    err = []
    for i, r in enumerate(rows):
      d = augment.simulated_experiment_offset(
          augment.evaluation_key(int(src[i]["index"])))
      err.append(int(np.abs(np.asarray(r["centre_shift"]) - d).max()))
  err = np.asarray(err)
  iou = np.asarray([r["aligned_iou"] for r in rows])
  off = err >= 2
  return {"benchmark": "trust_centre_errors", "rows": path,
          "seed": _SEED.value, "n": len(rows),
          "centre_off_2px_or_more": int(off.sum()),
          "median_iou_centre_right": round(float(np.median(iou[~off])), 4)
          if (~off).any() else None,
          "median_iou_centre_off": round(float(np.median(iou[off])), 4)
          if off.any() else None,
          "below_05": int((iou < 0.5).sum()),
          "below_05_centre_off": int(((iou < 0.5) & off).sum())}


def reconstruct_sets(argv):
  del argv
  model = pretrained.load_model(None)
  config = parse_refine_config(_REFINE.value)
  if config.objective == "poisson" and set(_SETS.value) != {"cxi"}:
    raise app.UsageError("--refine=objective=poisson needs photon counts: "
                         f"only the cxi set has them, got --sets="
                         f"{','.join(_SETS.value)}.")
  g = model.geometry
  report = Report()
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    work = _OUT.value or tmp
    for set_name, name, p, v, truth, extra in _inputs(_SEED.value,
                                                     _SETS.value, work):
      extra = dict(extra or {})
      out, sec = _reconstruct(model, config, p, v, extra.pop("photons", None))
      if set_name == "experiment":
        radius, sphere = best_sphere_loss(p, v, g)
        mine = float(protocol_losses(out.density[:1], p, v, g)[0])
        extra.update(best_sphere_radius_box=radius, sphere_loss=sphere,
                     protocol_loss=mine,
                     sphere_over_reconstruction=sphere / mine)
      row = _row(out, set_name, name, truth, sec, extra)
      rows.append(row)
      report.add(row)
      print(f"{set_name} {name}: IoU {row.get('aligned_iou', '-')} "
            f"confidence {row['confidence']:.2f} flagged {row['flagged']} "
            f"({sec:.1f} s)", flush=True)
  for s in _summaries(rows):
    s["seed"] = _SEED.value
    s["refine"] = _REFINE.value
    if _ORACLE_CENTRE.value:
      s["oracle_centre"] = True
    report.add(s)
  report.write(_JSON_OUT.value)


# ------------------------------------------------------------ calibration
def _xy(rows, extra=()):
  """Rows with a truth, their features (``extra``: names of
  CANDIDATE_FEATURES to add, or ``-NAME`` of trust.FEATURES to leave out)
  and whether each is right."""
  rows = [r for r in rows if not r.get("summary") and "aligned_iou" in r]
  drop = [trust.FEATURES.index(e[1:]) for e in extra if e.startswith("-")]
  keep = [i for i in range(len(trust.FEATURES)) if i not in drop]
  x = np.stack([np.concatenate([trust.features(r["signals"])[keep],
                                [CANDIDATE_FEATURES[e](r["signals"])
                                 for e in extra if not e.startswith("-")]])
                for r in rows])
  y = np.asarray([r["aligned_iou"] >= 0.5 for r in rows], float)
  return rows, x, y


def fit_logistic(x, y, l2: float = 1.0, iters: int = 50) -> np.ndarray:
  """L2-regularised logistic regression (Newton): ``[bias, w...]`` on
  standardised features, returned for the raw features."""
  mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
  z = np.column_stack([np.ones(len(x)), (x - mu) / sd])
  w = np.zeros(z.shape[1])
  reg = np.full(z.shape[1], l2)
  reg[0] = 0.0
  for _ in range(iters):
    p = 1.0 / (1.0 + np.exp(-z @ w))
    grad = z.T @ (p - y) + reg * w
    hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-9
    w -= np.linalg.solve(hess, grad)
  raw = w[1:] / sd
  return np.concatenate([[w[0] - raw @ mu], raw])


def _flag_rates(rows, conf, residual=None):
  """Flag rates of rows with confidences ``conf``; ``residual``:
  ``(fraction, times_noise)`` of the structured-residual rule instead of
  trust's."""
  iou = np.asarray([r["aligned_iou"] for r in rows])

  def warned(sig, c):
    if residual is None:
      return trust.flagged(sig, c)
    return bool(sig["empty"]
                or sig["network_loss_ratio"] > trust.IMPLAUSIBLE_LOSS_FACTOR
                or c < trust.LOW_CONFIDENCE
                or trust.structured_residual(sig, *residual))

  flag = np.asarray([warned(r["signals"], c) for r, c in zip(rows, conf)])
  retried = np.asarray([r["signals"].get("centres_tried", 1) > 1
                        for r in rows])
  nc = [f or r["aligned_iou"] >= 0.5 for r, f in zip(rows, flag)
        if r["set"] == "nonconvex"]
  return {"n": len(rows),
          "nonconvex_right_or_flagged": f"{sum(nc)} of {len(nc)}",
          "bad_flagged": f"{int((flag & (iou < 0.5)).sum())} of "
                         f"{int((iou < 0.5).sum())}",
          "good_flagged": f"{int((flag & (iou >= 0.7)).sum())} of "
                          f"{int((iou >= 0.7).sum())}",
          # Results refined again at other centres (their first fit was
          # doubtful): how many, wrong, and wrong but not flagged.
          "retried": int(retried.sum()),
          "retried_wrong": int((retried & (iou < 0.5)).sum()),
          "retried_wrong_unflagged": int((retried & (iou < 0.5)
                                          & ~flag).sum())}


def _probabilities(w, x, rows):
  z = np.clip(w[0] + x @ w[1:], -50, 50)
  p = 1.0 / (1.0 + np.exp(-z))
  return np.where([_ruled_out(r) for r in rows], 0.0, p)


def _ruled_out(row) -> bool:
  """Whether a rule, not the logistic model, sets the row's confidence (0)."""
  return row["signals"]["empty"] or trust.explains_nothing(row["signals"])


def _fittable(rows) -> list:
  """The rows the logistic model is fitted on: those no rule decides."""
  return [r for r in rows if r.get("summary") or not _ruled_out(r)]


def cross_validate(paths, extra=()) -> dict:
  """Leave-one-file-out: fit on the other files' rows, score the one left
  out; the flag rates and log loss over all left-out rows."""
  per_file = [records.read_jsonl(p) for p in paths]
  rows_all, conf_all = [], []
  for k in range(len(paths)):
    train = _fittable([r for j, rs in enumerate(per_file) if j != k
                       for r in rs])
    _, x, y = _xy(train, extra)
    w = fit_logistic(x, y)
    rows, x, _ = _xy(per_file[k], extra)
    conf_all.append(_probabilities(w, x, rows))
    rows_all += rows
  conf = np.concatenate(conf_all)
  y = np.asarray([r["aligned_iou"] >= 0.5 for r in rows_all], float)
  c = np.clip(conf, 1e-6, 1 - 1e-6)
  return {"features": "+".join(("base",) + tuple(extra)),
          "log_loss": round(float(-np.mean(y * np.log(c)
                                           + (1 - y) * np.log(1 - c))), 4),
          **_flag_rates(rows_all, conf)}


def calibrate(argv):
  del argv
  known = set(CANDIDATE_FEATURES) | {f"-{f}" for f in trust.FEATURES}
  bad = [e for item in _CV_EXTRA.value for e in item.split("+")
         if e not in known]
  if _CV.value and bad:
    raise app.UsageError(f"--cv_extra: unknown feature(s) {', '.join(bad)}; "
                         f"expected names of {', '.join(sorted(known))}.")
  for rule in _RESIDUAL_GRID.value or ():
    parts = rule.split("/")
    try:
      [float(v) for v in parts]
    except ValueError:
      parts = []
    if len(parts) != 2:
      raise app.UsageError(f"--residual_grid: {rule!r} is not "
                           "FRACTION/TIMES_NOISE (e.g. 0.06/7).")
  if _CV.value:
    for extra in [()] + [tuple(e.split("+")) for e in _CV_EXTRA.value]:
      print("leave-one-file-out:", cross_validate(_CALIBRATE.value, extra))
  rows = [r for path in _CALIBRATE.value for r in records.read_jsonl(path)]
  _, x, y = _xy(_fittable(rows))
  w = fit_logistic(x, y)
  rows, x, y = _xy(rows)
  print("CONFIDENCE_WEIGHTS = (" + ", ".join(f"{v:.4g}" for v in w) + ")")
  print("features:", ", ".join(trust.FEATURES))
  conf = np.asarray([trust.confidence(r["signals"], w) for r in rows])
  print("tuning rows:", _flag_rates(rows, conf))
  for rule in _RESIDUAL_GRID.value or ():
    frac, times = (float(v) for v in rule.split("/"))
    print(f"structured residuals above {frac:g} and {times:g}x the noise:",
          _flag_rates(rows, conf, (frac, times)))
  if not _EVALUATE.value:
    return
  rows, x, y = _xy([r for path in _EVALUATE.value
                    for r in records.read_jsonl(path)])
  conf = np.asarray([trust.confidence(r["signals"]) for r in rows])
  iou = np.asarray([r["aligned_iou"] for r in rows])
  print("held-out rows (weights in trust.CONFIDENCE_WEIGHTS):",
        _flag_rates(rows, conf))
  edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0001]
  print("| confidence | results | mean aligned IoU | fraction >= 0.5 |")
  print("|---|---|---|---|")
  for lo, hi in zip(edges[:-1], edges[1:]):
    sel = (conf >= lo) & (conf < hi)
    if sel.any():
      print(f"| {lo:.1f}-{min(hi, 1):.1f} | {int(sel.sum())} | "
            f"{iou[sel].mean():.2f} | {(iou[sel] >= 0.5).mean():.2f} |")
  if _FIGURE.value:
    from matplotlib.figure import Figure
    from msftnet import report as report_lib
    fig = Figure(figsize=(4.8, 4.0))
    ax = fig.add_subplot()
    for set_name in dict.fromkeys(r["set"] for r in rows):
      sel = np.asarray([r["set"] == set_name for r in rows])
      ax.scatter(conf[sel], iou[sel], s=14, label=set_name)
    ax.axhline(0.5, color="0.6", lw=0.8)
    ax.axvline(trust.LOW_CONFIDENCE, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("confidence")
    ax.set_ylabel("aligned IoU with the truth")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("held-out reconstructions", fontsize=9)
    fig.tight_layout()
    report_lib.save_figure(fig, _FIGURE.value)


def main(argv):
  if _CENTRE_ERRORS.value:
    report = Report()
    report.add(centre_errors(_CENTRE_ERRORS.value))
    report.write(_JSON_OUT.value)
  elif _CALIBRATE.value:
    calibrate(argv)
  else:
    reconstruct_sets(argv)


if __name__ == "__main__":
  app.run(main)
