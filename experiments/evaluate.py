r"""The paper's evaluations, measured on this implementation.

  python -m experiments.evaluate [--out=eval] [--model=DIR]
      [--studies=testset,crop,experiment] [--results=docs/results.md]

Studies (each resumable: finished items are kept in ``--out`` and skipped when
the command is run again):

* ``testset`` (paper Fig. 6): ``--n_test`` truncated solids written by
  ``experiments.make_dataset --test_set --resolution=192 --seed=TEST_SEED``
  (``--test_seed``, a seed never used for training or tuning; volumes
  block-averaged to 64^3 as the paper), reconstructed from the clean pattern
  and from the pattern after the simulated-experiment filter, by the network
  alone and with refinement: scatter loss (eq. 3, against the true volume's
  pattern), IoU at 0.5, aligned IoU (best translation/inversion), per class;
  figure ``docs/eval_testset.png``;
* ``crop`` (paper Fig. 8): the first ``--n_crop`` test solids, clean
  patterns seen only inside a disc of radius r px, loss against r;
* ``experiment`` (paper Fig. 11): the four patterns of
  ``--experiment_dir`` (``--experimental`` conventions): forward fit (all
  20 classes), network alone, network + refinement; losses in the paper's
  protocol; figures in ``OUT/experiment``.

``--results`` gets the tables (Markdown) with the commands and the paper's
statements. Runtimes are recorded with the results (``docs/results.md``).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np

from msftnet import augment
from msftnet import centre
from msftnet import data as data_lib
from msftnet import fitting
from msftnet import losses
from msftnet import measured
from msftnet import metrics
from msftnet import pretrained
from msftnet import reconstruct as recon
from msftnet import records
from msftnet import report
from msftnet.geometry import Geometry
from msftnet.paper_io import atomic_write

_OUT = flags.DEFINE_string("out", "eval", "Work/output directory.")
_MODEL = flags.DEFINE_string("model", None, "Model directory (default bundled).")
_STUDIES = flags.DEFINE_list("studies", ["testset", "crop", "experiment"],
                             "Which studies to run.")
_RESULTS = flags.DEFINE_string("results", "docs/results.md",
                               "Markdown file for the tables.")
_N_TEST = flags.DEFINE_integer("n_test", 42, "Test-set solids (2 per class "
                               "on average).")
_N_CROP = flags.DEFINE_integer("n_crop", 12, "Solids of the crop study.")
_STEPS = flags.DEFINE_integer("refine_steps", recon.RefineConfig.steps,
                              "Refinement steps.")
_FIT_STARTS = flags.DEFINE_integer("fit_starts", fitting.FitConfig.starts,
                                   "Forward fit: starts per class.")
_FIT_STEPS = flags.DEFINE_integer("fit_steps", fitting.FitConfig.steps,
                                  "Forward fit: full-problem steps.")
_FIT_COARSE = flags.DEFINE_integer(
    "fit_coarse_steps", fitting.FitConfig.coarse_steps,
    "Forward fit: coarse steps per start (0: the former full-problem fit).")
_FIT_CLASSES = flags.DEFINE_list("fit_classes", list(fitting.FIT_CLASSES),
                                 "Forward fit: classes.")
_EXP_DIR = flags.DEFINE_string("experiment_dir", "../shared/data/experiment",
                               "Folder with barke*.png and labels.csv.")
_BATCH = flags.DEFINE_integer("batch", 6, "Patterns reconstructed together.")
_TEST_SEED = flags.DEFINE_integer(
    "test_seed", 20261125, "Seed of the test set (never used for training "
    "or for tuning the reconstruction).")
_COARSE = flags.DEFINE_integer("coarse_steps",
                               recon.RefineConfig.coarse_steps,
                               "Polytope refinement: coarse-stage steps.")
_METHOD = flags.DEFINE_enum("method", recon.RefineConfig.method,
                            ["polytope", "voxels"], "Refinement method.")
_REFINE = flags.DEFINE_string(
    "refine", "", "Further refinement settings, FIELD=VALUE,... of "
    "msftnet.reconstruct.RefineConfig (e.g. keep=3,planes=48).")

CROP_RADII = (16, 24, 32, 48, 64)
PAPER_BARKE5 = {"forward fit (icosahedron)": 7.10e-3, "network": 4.63e-3,
                "elongated decahedron": 4.74e-3}
G = Geometry()


# ------------------------------------------------------------------ helpers
def _progress(label, done, total, t0, done_before=0):
  """One progress line; ``done_before`` items were finished by an earlier
  run (kept out of the rate)."""
  el = time.perf_counter() - t0
  rate = (done - done_before) / max(el, 1e-9)
  eta = (total - done) / max(rate, 1e-9)
  print(f"  {label}: {done}/{total}  {rate:.2f}/s  ETA {eta:.0f} s",
        flush=True)


_scatter = jax.jit(jax.vmap(lambda p, t: losses.scatter_loss(
    p[None], G, target=t[None])))


def _shape_metrics(pred, truth) -> list[dict]:
  sc = np.asarray(_scatter(jnp.asarray(pred), jnp.asarray(truth)))
  return [dict(scatter=float(sc[i]), iou=metrics.iou(pred[i], truth[i]),
               aligned_iou=metrics.aligned_iou(pred[i], truth[i]))
          for i in range(len(pred))]


def _config():
  return recon.parse_refine_config(_REFINE.value, recon.RefineConfig(
      method=_METHOD.value, steps=_STEPS.value, coarse_steps=_COARSE.value))


def _reconstruct_both(model, pats, vals):
  net = recon.reconstruct(pats, vals, model=model, refine_steps=0,
                          config=_config())
  ref = recon.reconstruct(pats, vals, model=model, config=_config())
  return net, ref


def _truth_loss(truth, pattern, valid, shift) -> float:
  """Paper-protocol loss of the true volume in the frame the
  reconstruction used (its centre estimate), dark level fitted."""
  p, v = centre.shift_pattern(np.where(valid, pattern, 0.0), valid, shift)
  return recon.pattern_losses(truth, p, v, G)[2]


# ------------------------------------------------------------------ testset
def _testset_source():
  root = os.path.join(_OUT.value, "testset_data")
  cmd = [sys.executable, "-m", "experiments.make_dataset", f"--out={root}",
         f"--n={_N_TEST.value}", f"--seed={_TEST_SEED.value}", "--test_set",
         "--resolution=192"]
  if not os.path.exists(os.path.join(root, "infos1.csv")):
    print("writing the test set: " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
  return data_lib.PaperSource(root)


def study_testset(model):
  src = _testset_source()
  n = len(src)
  for condition in ("clean", "simulated_experiment"):
    path = os.path.join(_OUT.value, f"testset_{condition}.jsonl")
    done = len(records.read_jsonl(path))
    t0 = time.perf_counter()
    for start in range(done, n, _BATCH.value):
      idx = range(start, min(n, start + _BATCH.value))
      recs = [src[i] for i in idx]
      pv = [augment.evaluation_input(r["pattern"], int(r["index"]),
                                     condition) for r in recs]
      pats = np.stack([p for p, _ in pv])
      vals = np.stack([v for _, v in pv])
      truth = np.stack([r["density"] for r in recs])
      t1 = time.perf_counter()
      net, ref = _reconstruct_both(model, pats, vals)
      seconds = (time.perf_counter() - t1) / len(recs)
      m_net = _shape_metrics(net.density, truth)
      m_ref = _shape_metrics(ref.density, truth)
      rows = []
      for j, i in enumerate(idx):
        truth_loss = _truth_loss(truth[j], pats[j], vals[j],
                                 tuple(ref.centre_shift[j]))
        rows.append({"nr": int(recs[j]["index"]),
                     "class": src.rows[i]["polyhedron"],
                     "valid_fraction": float(vals[j].mean()),
                     **{f"{k}_network": v for k, v in m_net[j].items()},
                     **{f"{k}_refined": v for k, v in m_ref[j].items()},
                     "pattern_loss_network": float(net.paper_loss_after[j]),
                     "pattern_loss_refined": float(ref.paper_loss_after[j]),
                     "pattern_loss_truth": truth_loss,
                     "loss_ratio_refined": float(ref.paper_loss_after[j])
                                           / max(truth_loss, 1e-12),
                     "start": str(ref.start_name[j]),
                     "centre_shift": [int(x) for x in ref.centre_shift[j]],
                     "seconds_per_pattern": seconds})
        if i < 6:
          np.save(os.path.join(_OUT.value, f"testset_{condition}_{i}.npy"),
                  np.stack([pats[j], vals[j].astype(np.float32)]))
          np.save(os.path.join(_OUT.value,
                               f"testset_{condition}_{i}_vols.npy"),
                  np.stack([truth[j], net.density[j], ref.density[j]]))
      records.append_jsonl(path, rows)
      _progress(f"testset/{condition}", idx[-1] + 1, n, t0, done)
  _testset_figure()


def _testset_figure():
  cond = "simulated_experiment"
  k = 6
  if not os.path.exists(os.path.join(_OUT.value, f"testset_{cond}_{k-1}.npy")):
    return
  fig = Figure(figsize=(2.4 * k, 9.6))
  axes = fig.subplots(4, k)
  rows = records.read_jsonl(os.path.join(_OUT.value, f"testset_{cond}.jsonl"))
  for i in range(k):
    pv = np.load(os.path.join(_OUT.value, f"testset_{cond}_{i}.npy"))
    vols = np.load(os.path.join(_OUT.value, f"testset_{cond}_{i}_vols.npy"))
    axes[0, i].imshow(pv[0], cmap="magma", vmin=0, vmax=1)
    axes[0, i].set_title(rows[i]["class"][:22], fontsize=8)
    for r, (name, v) in enumerate(zip(("truth", "network", "refined"), vols)):
      axes[r + 1, i].imshow((v > 0.5).sum(0), cmap="viridis", origin="lower")
      key = {"truth": None, "network": "network", "refined": "refined"}[name]
      label = name if key is None else (
          f"{name}: aIoU {rows[i]['aligned_iou_' + key]:.2f}")
      axes[r + 1, i].set_title(label, fontsize=8)
    for a in axes[:, i]:
      a.set_xticks([])
      a.set_yticks([])
  fig.suptitle("Test set (truncated solids), simulated-experiment inputs: "
               "thickness along the beam")
  fig.tight_layout()
  os.makedirs("docs", exist_ok=True)
  report.save_figure(fig, "docs/eval_testset.png")


# --------------------------------------------------------------------- crop
def study_crop(model):
  src = _testset_source()
  n = min(_N_CROP.value, len(src))
  path = os.path.join(_OUT.value, "crop.jsonl")
  done = {(r["nr"], r["radius_px"]) for r in records.read_jsonl(path)}
  m = G.detector_px
  yy, xx = np.mgrid[:m, :m] - m // 2
  recs = [src[i] for i in range(n)]
  truth = np.stack([r["density"] for r in recs])
  t0 = time.perf_counter()
  for k, radius in enumerate(CROP_RADII):
    if all((int(r["index"]), radius) in done for r in recs):
      continue
    disc = (yy**2 + xx**2) < radius**2
    vals = np.broadcast_to(disc, (n, m, m)).copy()
    pats = np.stack([np.where(disc, r["pattern"], 0.0) for r in recs])
    rows = []
    for s in range(0, n, _BATCH.value):
      sl = slice(s, s + _BATCH.value)
      net, ref = _reconstruct_both(model, pats[sl], vals[sl])
      for j, (a, b) in enumerate(zip(_shape_metrics(net.density, truth[sl]),
                                     _shape_metrics(ref.density, truth[sl]))):
        rows.append({"nr": int(recs[s + j]["index"]), "radius_px": radius,
                     **{f"{q}_network": v for q, v in a.items()},
                     **{f"{q}_refined": v for q, v in b.items()}})
    records.append_jsonl(path, rows)
    _progress("crop radii", k + 1, len(CROP_RADII), t0)


# --------------------------------------------------------------- experiment
def study_experiment(model):
  out = os.path.join(_OUT.value, "experiment")
  os.makedirs(out, exist_ok=True)
  labels = {}
  with open(os.path.join(_EXP_DIR.value, "labels.csv"), newline="") as f:
    for row in csv.DictReader(f):
      labels[measured.stem_of(row["scatter"])] = row["polyhedron"]
  paths = [os.path.join(_EXP_DIR.value, s + ".png") for s in sorted(labels)]
  good, bad = measured.load_many(paths, experimental=True)
  report.print_errors(bad)
  config = fitting.FitConfig(starts=_FIT_STARTS.value, steps=_FIT_STEPS.value,
                             coarse_steps=_FIT_COARSE.value,
                             classes=tuple(_FIT_CLASSES.value))
  fits_dir = os.path.join(out, "fits")
  os.makedirs(fits_dir, exist_ok=True)
  for stem, path, pattern, valid, scale_info in good:
    # The forward fit does not depend on the network: cached across runs.
    fit_path = os.path.join(fits_dir, f"{stem}.npz")
    if os.path.exists(fit_path):
      cached = np.load(fit_path, allow_pickle=False)
      fit_info = json.loads(str(cached["info"]))
      fit_density, fit_pattern = cached["density"], cached["pattern"]
    else:
      def progress(i, total, cf, t=time.perf_counter(), stem=stem):
        el = time.perf_counter() - t
        print(f"  {stem} fit [{i}/{total}] {cf.polyhedron}: "
              f"{cf.paper_loss:.3e} (ETA {el / i * (total - i):.0f} s)",
              flush=True)
      t1 = time.perf_counter()
      fit = fitting.fit(pattern, valid, config=config, progress=progress)
      fit_info = {"best": fit.best._asdict(),
                  "per_class": {f.polyhedron: f.paper_loss
                                for f in fit.per_class},
                  "seconds": time.perf_counter() - t1,
                  "starts": config.starts, "steps": config.steps,
                  "classes": len(config.classes)}
      fit_density, fit_pattern = fit.density, fit.pattern
      with atomic_write(fit_path) as f:
        np.savez(f, info=json.dumps(fit_info), density=fit_density,
                 pattern=fit_pattern)
    t0 = time.perf_counter()
    net, ref = _reconstruct_both(model, pattern[None], valid[None])
    t_rec = time.perf_counter() - t0
    best = fit_info["best"]
    per_class = fit_info["per_class"]
    record = {
        "published_class": labels[stem],
        "fit_class": best["polyhedron"], "fit_loss": best["paper_loss"],
        "fit_loss_published_class": per_class.get(labels[stem]),
        "fit_circumradius_nm": best["circumradius_nm"],
        "fit_stretch": best["stretch"],
        "fit_per_class": per_class,
        "network_loss": float(net.paper_loss_after[0]),
        "refined_loss": float(ref.paper_loss_after[0]),
        "refined_start": str(ref.start_name[0]),
        "valid_fraction": float(valid.mean()),
        "seconds_reconstruct": t_rec, "seconds_fit": fit_info["seconds"],
        "fit_starts": fit_info["starts"], "fit_steps": fit_info["steps"],
    }
    report.write_result(out, f"{stem}_fit", density=fit_density,
                        pattern=pattern, valid=valid, simulated=fit_pattern,
                        metrics=record,
                        title=f"{stem}: forward fit {best['polyhedron']}, "
                              f"loss {best['paper_loss']:.2e}")
    report.write_result(out, f"{stem}_refined", density=ref.density[0],
                        pattern=pattern, valid=valid,
                        simulated=ref.pattern[0], metrics=record,
                        title=f"{stem}: network {record['network_loss']:.2e}"
                              f" -> refined {record['refined_loss']:.2e}")
    report.write_json(os.path.join(out, f"{stem}.json"), record)
    print(f"{stem}: fit {best['polyhedron']} {best['paper_loss']:.3e}, "
          f"network {record['network_loss']:.3e}, refined "
          f"{record['refined_loss']:.3e}", flush=True)


# ------------------------------------------------------------------ results
def _mean(rows, key):
  vals = [r[key] for r in rows]
  return float(np.mean(vals)) if vals else float("nan")


def _median(rows, key):
  vals = [r[key] for r in rows]
  return float(np.median(vals)) if vals else float("nan")


def _sem(rows, key):
  vals = [r[key] for r in rows]
  return float(np.std(vals) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0


def results_markdown(model) -> str:
  lines = ["# Evaluation results", "",
           "Measured with `python -m experiments.evaluate` (model: "
           f"`{os.path.relpath(model.path)}`, step {model.info.get('step')}, "
           f"width {model.width}; refinement {_STEPS.value} steps, "
           "`msftnet.reconstruct.RefineConfig` defaults) on the 2-core CPU "
           "machine. Raw rows: `eval/*.jsonl`, `eval/experiment/*.json` "
           "(not committed; the command regenerates them).", "",
           "Scatter loss: eq. 3 of the paper (normalised log patterns at "
           "eps 100, 64^3 MSFT) between the reconstruction and the *true* "
           "volume. Pattern loss: the paper's protocol against the *input* "
           "(mean over all 128x128 pixels, zero outside the valid region; "
           "our simulated pattern's dark level is fitted). IoU at 0.5 as the "
           "paper; aligned IoU is the best IoU over translations and the "
           "inversion r -> -r, which a far-field pattern cannot see.", ""]
  for condition in ("clean", "simulated_experiment"):
    rows = records.read_jsonl(os.path.join(_OUT.value, f"testset_{condition}.jsonl"))
    if not rows:
      continue
    lines += [f"## (a) Test set of truncated solids, {condition} input "
              f"({len(rows)} solids, seed {_TEST_SEED.value}, method "
              f"{_METHOD.value})", "",
              "| | median aligned IoU | mean aligned IoU | mean IoU | "
              "mean scatter loss | median pattern loss | median loss / "
              "truth's |", "|---|---|---|---|---|---|---|"]
    for who in ("network", "refined"):
      ratio = (f"{_median(rows, 'loss_ratio_refined'):.2f}"
               if who == "refined" and "loss_ratio_refined" in rows[0]
               else "")
      lines.append(
          f"| {who} | {_median(rows, 'aligned_iou_' + who):.3f} | "
          f"{_mean(rows, 'aligned_iou_' + who):.3f} | "
          f"{_mean(rows, 'iou_' + who):.3f} | "
          f"{_mean(rows, 'scatter_' + who):.5f} +- "
          f"{_sem(rows, 'scatter_' + who):.5f} | "
          f"{_median(rows, 'pattern_loss_' + who):.2e} | {ratio} |")
    if "seconds_per_pattern" in rows[0]:
      lines += ["", f"Time per pattern (network + refinement, batch "
                f"{_BATCH.value}): median "
                f"{_median(rows, 'seconds_per_pattern'):.1f} s."]
    lines += ["", "Per class (median aligned IoU, network -> refined; median "
              "loss ratio refined / truth):", "",
              "| class | n | aligned IoU | loss / truth's |",
              "|---|---|---|---|"]
    for cls in sorted({r["class"] for r in rows}):
      cr = [r for r in rows if r["class"] == cls]
      ratio = (f"{_median(cr, 'loss_ratio_refined'):.2f}"
               if "loss_ratio_refined" in cr[0] else "")
      lines.append(f"| {cls} | {len(cr)} | "
                   f"{_median(cr, 'aligned_iou_network'):.2f} -> "
                   f"{_median(cr, 'aligned_iou_refined'):.2f} | {ratio} |")
    lines.append("")
  if os.path.exists("docs/eval_testset.png"):
    lines += ["![test set](eval_testset.png)", ""]
  rows = records.read_jsonl(os.path.join(_OUT.value, "crop.jsonl"))
  if rows:
    lines += ["## (b) Detector range (Fig. 8): clean patterns seen inside a "
              "disc of radius r", "",
              "| r (px) | scatter loss network | scatter loss refined | "
              "aligned IoU network | aligned IoU refined |",
              "|---|---|---|---|---|"]
    for radius in CROP_RADII:
      rr = [r for r in rows if r["radius_px"] == radius]
      if rr:
        lines.append(
            f"| {radius} | {_mean(rr, 'scatter_network'):.5f} | "
            f"{_mean(rr, 'scatter_refined'):.5f} | "
            f"{_mean(rr, 'aligned_iou_network'):.3f} | "
            f"{_mean(rr, 'aligned_iou_refined'):.3f} |")
    lines.append("")
  exp = os.path.join(_OUT.value, "experiment")
  recs = {}
  if os.path.isdir(exp):
    for name in sorted(os.listdir(exp)):
      if name.endswith(".json") and "_" not in name:
        with open(os.path.join(exp, name)) as f:
          recs[name[:-5]] = json.load(f)
  if recs:
    lines += ["## (c) Experimental patterns (Barke et al. 2015), paper "
              "protocol", "",
              "| pattern | published fit | our fit: class (loss) | our fit "
              "of the published class | network | network + refinement |",
              "|---|---|---|---|---|---|"]
    for stem, r in recs.items():
      pub = r["fit_loss_published_class"]
      lines.append(
          f"| {stem} | {r['published_class']} | {r['fit_class']} "
          f"({r['fit_loss']:.2e}) | {pub:.2e} | {r['network_loss']:.2e} | "
          f"{r['refined_loss']:.2e} |")
    lines += ["", "The paper on barke5 (Fig. 11): " + ", ".join(
        f"{k} {v:.2e}" for k, v in PAPER_BARKE5.items()) + ".", ""]
  lines += ["## (d) Physics vs supervised vs hybrid training (Appendix, "
            "Fig. 12-13)", "",
            "Not run: each arm needs its own training run of the same "
            "budget, and one CPU run of 1 600 steps takes about an hour on "
            "this machine. The trainer supports all three "
            "(`--config.loss=physics|supervised|hybrid`); the bundled model "
            "uses the hybrid loss because the physics loss alone learned a "
            "nearly constant ball at this width and budget (see its model "
            "card).", ""]
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  unknown = set(_STUDIES.value) - {"testset", "crop", "experiment"}
  if unknown:
    raise app.UsageError(f"unknown studies {sorted(unknown)}.")
  try:
    _config()                 # a bad --refine fails before any work starts
    report.check_out_dir(_OUT.value)
    os.makedirs(_OUT.value, exist_ok=True)
    model = pretrained.load_model(_MODEL.value)
    for study in _STUDIES.value:
      print(f"== {study}", flush=True)
      {"testset": study_testset, "crop": study_crop,
       "experiment": study_experiment}[study](model)
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  text = results_markdown(model)
  with atomic_write(_RESULTS.value, "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
