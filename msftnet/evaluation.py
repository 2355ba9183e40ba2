"""The evaluator: reconstructions scored against truths, and the paper's studies.

One set of shape metrics for every place that scores a prediction against a
known particle (the model card, ``experiments.evaluate``, the benchmarks):

* :func:`shape_metrics` ``(pred [B, N, N, N], truth [B, N, N, N]) -> rows``:
  ``scatter`` (eq. 3 of the paper: normalised log patterns at the paper's
  eps, against the truth's pattern), ``iou`` (at 0.5), ``aligned_iou`` (the
  best IoU over translations and the inversion, which a far-field pattern
  cannot see), ``vol_pred``/``vol_true`` (occupied fractions of the box);
* :func:`summarize` rows -> means (and the scatter loss's standard error);
* :func:`network_validation`: the network alone on the validation split of
  a data config, clean and after the simulated-experiment filter (the model
  card's table).

Training's in-loop validation (``msftnet.train.eval_step``) computes the
same scatter loss and IoU inside its compiled step (``msftnet.losses``).

The paper's studies (each resumable: finished items are kept in
``settings.out`` and skipped when run again), driven by
``experiments.evaluate``:

* :func:`study_testset` (paper Fig. 6): truncated test solids written by
  :func:`msftnet.data.write_paper_dataset` (192^3, block-averaged to 64^3),
  reconstructed from the clean pattern and from the simulated-experiment
  pattern, by the network alone and with refinement;
* :func:`study_crop` (Fig. 8): clean patterns seen inside a disc of radius r;
* :func:`study_experiment` (Fig. 11): measured patterns with published
  labels: forward fit, network, network + refinement, paper protocol;
* :func:`results_markdown`: the tables of all three.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import numpy as np
from tqdm.auto import tqdm

from msftnet import augment
from msftnet import centre
from msftnet import data as data_lib
from msftnet import fitting
from msftnet import losses
from msftnet import measured
from msftnet import metrics
from msftnet import reconstruct as recon
from msftnet import records
from msftnet import report
from msftnet.geometry import Geometry
from msftnet.paper_io import atomic_write
from msftnet.refine import measurement as meas

__all__ = [
    "shape_metrics", "summarize", "network_validation", "Settings",
    "STUDIES", "testset_source", "study_testset", "testset_figure", "study_crop", "study_experiment",
    "results_markdown", "CROP_RADII", "PAPER_BARKE5",
]

CROP_RADII = (16, 24, 32, 48, 64)
#: The paper's losses on barke5 (Fig. 11), for the table.
PAPER_BARKE5 = {"forward fit (icosahedron)": 7.10e-3, "network": 4.63e-3,
                "elongated decahedron": 4.74e-3}


# ------------------------------------------------------------ the metrics
@functools.partial(jax.jit, static_argnums=2)
def _scatter_rows(pred, target_pattern, geometry):
  return jax.vmap(lambda p, t: losses.scatter_loss(
      p[None], geometry, target_pattern=t[None]))(pred, target_pattern)


def shape_metrics(pred, truth, geometry: Geometry, *,
                  target_pattern=None) -> list[dict]:
  """Per-sample metrics of ``pred [B, N, N, N]`` against ``truth``.

  ``target_pattern [B, M, M]``: the truth's pattern at the paper's loss eps
  when already known (the data pipeline's ``loss_target``); otherwise it is
  simulated from ``truth`` with ``geometry`` (default: the paper's).
  """
  pred = np.asarray(pred, np.float32)
  truth = np.asarray(truth, np.float32)
  if pred.shape != truth.shape or pred.ndim != 4:
    raise ValueError(f"shape_metrics: expected pred and truth [B, N, N, N] "
                     f"of one shape, got {pred.shape} and {truth.shape}.")
  g = geometry
  if target_pattern is None:
    target_pattern = losses.pattern_of(jnp.asarray(truth), g)
  sc = np.asarray(_scatter_rows(jnp.asarray(pred), jnp.asarray(target_pattern),
                                g))
  return [dict(scatter=float(sc[i]), iou=metrics.iou(pred[i], truth[i]),
               aligned_iou=metrics.aligned_iou(pred[i], truth[i]),
               vol_pred=float((pred[i] > 0.5).mean()),
               vol_true=float((truth[i] > 0.5).mean()))
          for i in range(len(pred))]


def summarize(rows: list[dict]) -> dict:
  """Mean of every metric over ``rows``, ``scatter_sem`` (standard error of
  the mean scatter loss) and ``samples``."""
  if not rows:
    raise ValueError("summarize: no rows.")
  out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  if "scatter" in rows[0]:
    out["scatter_sem"] = float(np.std([r["scatter"] for r in rows])
                               / np.sqrt(len(rows)))
  out["samples"] = len(rows)
  return out


def network_validation(model, data_config: data_lib.DataConfig, n: int,
                       batch: int = 16, *, progress: bool = True) -> dict:
  """The network alone on ``n`` validation samples of ``data_config``:
  ``{"clean": summary, "simulated_experiment": summary}``."""
  _, n_val = data_lib.split_sizes(data_config.n_samples)
  n = min(n, n_val)
  it = iter(data_lib.procedural_dataset(data_config, "validation", batch)
            .to_iter_dataset(data_lib.EVAL_READ_OPTIONS))
  rows = {"clean": [], "simulated_experiment": []}
  with tqdm(total=n, unit="sample", desc="validation",
            disable=not progress) as bar:
    while len(rows["clean"]) < n:
      b = next(it)
      seen = len(rows["clean"])
      degraded, _ = augment.apply_filter_batch(
          "simulated_experiment", jax.random.key(seen), b["pattern"])
      for name, pat in (("clean", b["pattern"]),
                        ("simulated_experiment", np.asarray(degraded))):
        rows[name] += shape_metrics(np.asarray(model(pat)), b["density"],
                                    model.geometry,
                                    target_pattern=b["loss_target"])
      bar.update(min(len(b["pattern"]), n - seen))
  return {name: summarize(rs[:n]) for name, rs in rows.items()}


# -------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class Settings:
  """What the studies run and where they keep their rows.

  Attributes:
    out: work/output folder (rows, cached fits, figures' inputs).
    refine: the refinement of the "refined" column.
    batch: patterns reconstructed together.
    n_test, n_crop: solids of the test-set and crop studies.
    test_seed: seed of the test set (never used for training or tuning).
    fit: the forward fit of the experiment study.
    experiment_dir: folder with ``barke*.png`` and ``labels.csv``.
    figure_dir: where ``eval_testset.png`` goes.
    progress: progress bars on stderr.
  """

  out: str = "eval"
  refine: recon.RefineConfig = recon.RefineConfig()
  batch: int = 6
  n_test: int = 42
  n_crop: int = 12
  test_seed: int = 20261125
  fit: fitting.FitConfig = fitting.FitConfig()
  experiment_dir: str = "../shared/data/experiment"
  figure_dir: str = "docs"
  progress: bool = True

  def __post_init__(self):
    if min(self.batch, self.n_test, self.n_crop) < 1:
      raise ValueError(f"batch, n_test and n_crop must be >= 1, got "
                       f"{self.batch}, {self.n_test} and {self.n_crop}.")


def _reconstruct_both(model, pats, vals, s: Settings):
  net = recon.reconstruct(pats, vals, model=model, refine_steps=0,
                          config=s.refine)
  ref = recon.reconstruct(pats, vals, model=model, config=s.refine)
  return net, ref


def _truth_loss(truth, pattern, valid, shift, geometry) -> float:
  """Paper-protocol loss of the true volume in the frame the
  reconstruction used (its centre estimate), dark level fitted."""
  p, v = centre.shift_pattern(np.where(valid, pattern, 0.0), valid, shift)
  return meas.pattern_losses(truth, p, v, geometry)[2]


def _bar(s: Settings, desc: str, total: int, initial: int = 0):
  return tqdm(total=total, initial=initial, desc=desc, unit="pattern",
              disable=not s.progress)


# ---------------------------------------------------------------- testset
def testset_source(s: Settings) -> data_lib.PaperSource:
  """The test set of ``s`` (written on first use, then read back)."""
  root = os.path.join(s.out, "testset_data")
  if not os.path.exists(os.path.join(root, "infos1.csv")):
    data_lib.write_paper_dataset(root, s.n_test, seed=s.test_seed,
                                 resolution=192, test_set=True,
                                 progress=s.progress)
  return data_lib.PaperSource(root)


def study_testset(model, s: Settings) -> None:
  src = testset_source(s)
  n, g = len(src), model.geometry
  for condition in ("clean", "simulated_experiment"):
    path = os.path.join(s.out, f"testset_{condition}.jsonl")
    done = len(records.read_jsonl(path))
    with _bar(s, f"testset/{condition}", n, done) as bar:
      for start in range(done, n, s.batch):
        idx = range(start, min(n, start + s.batch))
        recs = [src[i] for i in idx]
        pv = [augment.evaluation_input(r["pattern"], int(r["index"]),
                                       condition) for r in recs]
        pats = np.stack([p for p, _ in pv])
        vals = np.stack([v for _, v in pv])
        truth = np.stack([r["density"] for r in recs])
        t1 = time.perf_counter()
        net, ref = _reconstruct_both(model, pats, vals, s)
        seconds = (time.perf_counter() - t1) / len(recs)
        target = losses.pattern_of(jnp.asarray(truth), g)   # once for both
        m_net = shape_metrics(net.density, truth, g, target_pattern=target)
        m_ref = shape_metrics(ref.density, truth, g, target_pattern=target)
        rows = []
        for j, i in enumerate(idx):
          truth_loss = _truth_loss(truth[j], pats[j], vals[j],
                                   tuple(ref.centre_shift[j]), g)
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
            np.save(os.path.join(s.out, f"testset_{condition}_{i}.npy"),
                    np.stack([pats[j], vals[j].astype(np.float32)]))
            np.save(os.path.join(s.out, f"testset_{condition}_{i}_vols.npy"),
                    np.stack([truth[j], net.density[j], ref.density[j]]))
        records.append_jsonl(path, rows)
        bar.update(len(idx))
  testset_figure(s)


def testset_figure(s: Settings, k: int = 6) -> str | None:
  """Inputs, truths, network and refined reconstructions of the first ``k``
  simulated-experiment test solids (thickness maps); the path written."""
  cond = "simulated_experiment"
  if not os.path.exists(os.path.join(s.out, f"testset_{cond}_{k-1}.npy")):
    return None
  fig = Figure(figsize=(2.4 * k, 9.6))
  axes = fig.subplots(4, k)
  rows = records.read_jsonl(os.path.join(s.out, f"testset_{cond}.jsonl"))
  for i in range(k):
    pv = np.load(os.path.join(s.out, f"testset_{cond}_{i}.npy"))
    vols = np.load(os.path.join(s.out, f"testset_{cond}_{i}_vols.npy"))
    axes[0, i].imshow(pv[0], cmap="magma", vmin=0, vmax=1)
    axes[0, i].set_title(rows[i]["class"][:22], fontsize=8)
    for r, (name, v) in enumerate(zip(("truth", "network", "refined"), vols)):
      axes[r + 1, i].imshow((v > 0.5).sum(0), cmap="viridis", origin="lower")
      label = name if name == "truth" else (
          f"{name}: aIoU {rows[i]['aligned_iou_' + name]:.2f}")
      axes[r + 1, i].set_title(label, fontsize=8)
    for a in axes[:, i]:
      a.set_xticks([])
      a.set_yticks([])
  fig.suptitle("Test set (truncated solids), simulated-experiment inputs: "
               "thickness along the beam")
  fig.tight_layout()
  os.makedirs(s.figure_dir, exist_ok=True)
  path = os.path.join(s.figure_dir, "eval_testset.png")
  report.save_figure(fig, path)
  return path


# ------------------------------------------------------------------- crop
def study_crop(model, s: Settings) -> None:
  src = testset_source(s)
  n = min(s.n_crop, len(src))
  path = os.path.join(s.out, "crop.jsonl")
  done = {(r["nr"], r["radius_px"]) for r in records.read_jsonl(path)}
  m = model.geometry.detector_px
  yy, xx = np.mgrid[:m, :m] - m // 2
  recs = [src[i] for i in range(n)]
  truth = np.stack([r["density"] for r in recs])
  with _bar(s, "crop", n * len(CROP_RADII)) as bar:
    for radius in CROP_RADII:
      if all((int(r["index"]), radius) in done for r in recs):
        bar.update(n)
        continue
      disc = (yy**2 + xx**2) < radius**2
      vals = np.broadcast_to(disc, (n, m, m)).copy()
      pats = np.stack([np.where(disc, r["pattern"], 0.0) for r in recs])
      rows = []
      for b in range(0, n, s.batch):
        sl = slice(b, b + s.batch)
        net, ref = _reconstruct_both(model, pats[sl], vals[sl], s)
        target = losses.pattern_of(jnp.asarray(truth[sl]), model.geometry)
        for j, (a, c) in enumerate(zip(
            shape_metrics(net.density, truth[sl], model.geometry,
                          target_pattern=target),
            shape_metrics(ref.density, truth[sl], model.geometry,
                          target_pattern=target))):
          rows.append({"nr": int(recs[b + j]["index"]), "radius_px": radius,
                       **{f"{q}_network": v for q, v in a.items()},
                       **{f"{q}_refined": v for q, v in c.items()}})
        bar.update(len(pats[sl]))
      records.append_jsonl(path, rows)


# ------------------------------------------------------------- experiment
def _labels(experiment_dir) -> dict:
  path = os.path.join(experiment_dir, "labels.csv")
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such file; expected the experiment "
                     "folder's labels.csv (nr, scatter, polyhedron).")
  with open(path, newline="") as f:
    return {measured.stem_of(row["scatter"]): row["polyhedron"]
            for row in csv.DictReader(f)}


def _cached_fit(pattern, valid, stem, fits_dir, s: Settings, geometry):
  """The forward fit of ``stem`` (it does not depend on the network: kept
  in ``fits_dir`` across runs)."""
  fit_path = os.path.join(fits_dir, f"{stem}.npz")
  if os.path.exists(fit_path):
    cached = np.load(fit_path, allow_pickle=False)
    return (json.loads(str(cached["info"])), cached["density"],
            cached["pattern"])
  with tqdm(total=s.fit.class_fits, desc=f"{stem} fit", unit="class",
            disable=not s.progress) as bar:
    t1 = time.perf_counter()
    fit = fitting.fit(pattern, valid, config=s.fit, geometry=geometry,
                      progress=lambda i, total, cf: bar.update(1))
  info = {"best": fit.best._asdict(),
          "per_class": {f.polyhedron: f.paper_loss for f in fit.per_class},
          "seconds": time.perf_counter() - t1, "starts": s.fit.starts,
          "steps": s.fit.steps, "classes": len(s.fit.classes)}
  with atomic_write(fit_path) as f:
    np.savez(f, info=json.dumps(info), density=fit.density,
             pattern=fit.pattern)
  return info, fit.density, fit.pattern


def study_experiment(model, s: Settings) -> list[str]:
  """Returns the one-line errors of unusable patterns (the others run)."""
  out = os.path.join(s.out, "experiment")
  fits_dir = os.path.join(out, "fits")
  os.makedirs(fits_dir, exist_ok=True)
  labels = _labels(s.experiment_dir)
  paths = [os.path.join(s.experiment_dir, st + ".png") for st in sorted(labels)]
  good, bad = measured.load_many(paths, experimental=True,
                                 geometry=model.geometry)
  for frame in good:
    stem, pattern, valid = frame.stem, frame.pattern, frame.valid
    fit_info, fit_density, fit_pattern = _cached_fit(
        pattern, valid, stem, fits_dir, s, model.geometry)
    t0 = time.perf_counter()
    net, ref = _reconstruct_both(model, pattern[None], valid[None], s)
    t_rec = time.perf_counter() - t0
    best, per_class = fit_info["best"], fit_info["per_class"]
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
                        metrics=record, geometry=model.geometry,
                        title=f"{stem}: forward fit {best['polyhedron']}, "
                              f"loss {best['paper_loss']:.2e}")
    report.write_result(out, f"{stem}_refined", density=ref.density[0],
                        pattern=pattern, valid=valid,
                        simulated=ref.pattern[0], metrics=record,
                        geometry=model.geometry,
                        title=f"{stem}: network {record['network_loss']:.2e}"
                              f" -> refined {record['refined_loss']:.2e}")
    records.write_result_json(os.path.join(out, f"{stem}.json"), record)
  return bad


STUDIES = {"testset": study_testset, "crop": study_crop,
           "experiment": study_experiment}


# ---------------------------------------------------------------- tables
def _stat(rows, key, how):
  vals = [r[key] for r in rows]
  if how == "sem":
    return float(np.std(vals) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0
  return float({"mean": np.mean, "median": np.median}[how](vals)) if vals \
      else float("nan")


def results_markdown(model, s: Settings) -> str:
  """The tables of every study with rows in ``s.out`` (Markdown)."""
  lines = ["# Evaluation results", "",
           "Measured with `python -m experiments.evaluate` (model: "
           f"`{os.path.relpath(model.path)}`, step {model.info.get('step')}, "
           f"width {model.width}; refinement {s.refine.steps} steps, "
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
    rows = records.read_jsonl(os.path.join(s.out,
                                           f"testset_{condition}.jsonl"))
    if rows:
      lines += _testset_table(rows, condition, s)
  if os.path.exists(os.path.join(s.figure_dir, "eval_testset.png")):
    lines += ["![test set](eval_testset.png)", ""]
  rows = records.read_jsonl(os.path.join(s.out, "crop.jsonl"))
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
            f"| {radius} | {_stat(rr, 'scatter_network', 'mean'):.5f} | "
            f"{_stat(rr, 'scatter_refined', 'mean'):.5f} | "
            f"{_stat(rr, 'aligned_iou_network', 'mean'):.3f} | "
            f"{_stat(rr, 'aligned_iou_refined', 'mean'):.3f} |")
    lines.append("")
  lines += _experiment_table(os.path.join(s.out, "experiment"))
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


def _testset_table(rows, condition, s: Settings) -> list[str]:
  lines = [f"## (a) Test set of truncated solids, {condition} input "
           f"({len(rows)} solids, seed {s.test_seed}, method "
           f"{s.refine.method})", "",
           "| | median aligned IoU | mean aligned IoU | mean IoU | "
           "mean scatter loss | median pattern loss | median loss / "
           "truth's |", "|---|---|---|---|---|---|---|"]
  for who in ("network", "refined"):
    ratio = (f"{_stat(rows, 'loss_ratio_refined', 'median'):.2f}"
             if who == "refined" and "loss_ratio_refined" in rows[0] else "")
    lines.append(
        f"| {who} | {_stat(rows, 'aligned_iou_' + who, 'median'):.3f} | "
        f"{_stat(rows, 'aligned_iou_' + who, 'mean'):.3f} | "
        f"{_stat(rows, 'iou_' + who, 'mean'):.3f} | "
        f"{_stat(rows, 'scatter_' + who, 'mean'):.5f} +- "
        f"{_stat(rows, 'scatter_' + who, 'sem'):.5f} | "
        f"{_stat(rows, 'pattern_loss_' + who, 'median'):.2e} | {ratio} |")
  if "seconds_per_pattern" in rows[0]:
    lines += ["", f"Time per pattern (network + refinement, batch "
              f"{s.batch}): median "
              f"{_stat(rows, 'seconds_per_pattern', 'median'):.1f} s."]
  lines += ["", "Per class (median aligned IoU, network -> refined; median "
            "loss ratio refined / truth):", "",
            "| class | n | aligned IoU | loss / truth's |", "|---|---|---|---|"]
  for cls in sorted({r["class"] for r in rows}):
    cr = [r for r in rows if r["class"] == cls]
    ratio = (f"{_stat(cr, 'loss_ratio_refined', 'median'):.2f}"
             if "loss_ratio_refined" in cr[0] else "")
    lines.append(f"| {cls} | {len(cr)} | "
                 f"{_stat(cr, 'aligned_iou_network', 'median'):.2f} -> "
                 f"{_stat(cr, 'aligned_iou_refined', 'median'):.2f} | "
                 f"{ratio} |")
  return lines + [""]


def _experiment_table(folder) -> list[str]:
  recs = {}
  if os.path.isdir(folder):
    for name in sorted(os.listdir(folder)):
      if name.endswith(".json") and "_" not in name:
        with open(os.path.join(folder, name)) as f:
          recs[name[:-5]] = json.load(f)
  if not recs:
    return []
  lines = ["## (c) Experimental patterns (Barke et al. 2015), paper "
           "protocol", "",
           "| pattern | published fit | our fit: class (loss) | our fit "
           "of the published class | network | network + refinement |",
           "|---|---|---|---|---|---|"]
  for stem, r in recs.items():
    pub = r["fit_loss_published_class"]
    pub = "n/a" if pub is None else f"{pub:.2e}"
    lines.append(
        f"| {stem} | {r['published_class']} | {r['fit_class']} "
        f"({r['fit_loss']:.2e}) | {pub} | {r['network_loss']:.2e} | "
        f"{r['refined_loss']:.2e} |")
  return lines + ["", "The paper on barke5 (Fig. 11): " + ", ".join(
      f"{k} {v:.2e}" for k, v in PAPER_BARKE5.items()) + ".", ""]
