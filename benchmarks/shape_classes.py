r"""What each shot is: the shape network's class, size and orientation, held out.

  python -m benchmarks.shape_classes [--model=DIR] [--seed=20261209] [--n=420]
      [--experiment=../shared/data/experiment] [--json_out=FILE]
      [--confusion=PNG] [--orientation_fit=N] [--rerank_fit=N]
      [--match_basis=N] [--from_fit=N]

On ``--n`` solids of generator seed ``--seed`` (never used in training or
tuning; ``msftnet.shape_net.simulate``) in six conditions: truncated or not,
clean, through the simulated-experiment filter, or through the
``measured_image`` filter (like the paper's experimental images). Reports per condition the
class top-1 and top-3 accuracy, the radius's median relative error, the
stretch's, and the symmetry-aware orientation error (median, degrees;
classes with an orientation); the bars of #28 read: top-1/top-3 on
truncated clean solids, radius on clean solids, orientation on untruncated
clean solids. The network's time per pattern in batches of 32 (compiled,
median of 5 repeats). With ``--experiment``: the top 3 classes of
``barke1/3/5/7`` against the published fits (``labels.csv``). ``--confusion``
draws the per-class confusion matrix of the truncated clean solids.
``--match_basis=N``: the first ``N`` truncated clean solids (and barke) are
reconstructed and their class read off the refined polytope
(``msftnet.shape_net.match_basis``), beside the network's.
``--from_fit=N``: the first ``N`` truncated solids, clean and through the
simulated-experiment filter (and barke), are reconstructed with the shape
model, whose ``shape`` is the network's reading of the fitted answer's
noise-free pattern (``msftnet.shape_net.predict_fit``), against its reading
of the pattern itself, as it comes and centred where the answer was
refined.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time

from absl import app
from absl import flags
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import measured
from msftnet import pretrained
from msftnet import reconstruct
from msftnet import shape_net
from msftnet import solids
from msftnet.raster import rasterize

_MODEL = flags.DEFINE_string("model", None, "Shape model directory (default "
                             "the bundled one) or a training workdir.")
_SEED = flags.DEFINE_integer("seed", 20261209, "Generator seed (held out).")
_N = flags.DEFINE_integer("n", 420, "Solids per condition.")
_EXPERIMENT = flags.DEFINE_string("experiment", None, "Folder with barke*.png "
                                  "and labels.csv.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")
_CONFUSION = flags.DEFINE_string("confusion", None, "Confusion-matrix PNG.")
_RERANK = flags.DEFINE_integer("rerank_fit", 0, "Also rank the network's "
                               "top 3 classes of the first N truncated clean "
                               "solids by a forward fit of each "
                               "(shape_net.fit_orientation, classes=3).")
_MATCH = flags.DEFINE_integer("match_basis", 0, "Also reconstruct the first "
                              "N truncated clean solids (and barke with "
                              "--experiment) and read the class off the "
                              "refined polytope (shape_net.match_basis).")
_FROM_FIT = flags.DEFINE_integer("from_fit", 0, "Also reconstruct the first "
                                 "N truncated solids, clean and through the "
                                 "simulated-experiment filter (and barke), and "
                                 "read their class off the fitted answer's "
                                 "pattern (shape_net.predict_fit).")
_FIT = flags.DEFINE_integer("orientation_fit", 0, "Also orient the first N "
                            "untruncated clean solids by a forward fit of "
                            "the top class (shape_net.fit_orientation), and "
                            "of the true class (the bound).")

#: name -> (truncated, filter): none, the simulated-experiment filter, or
#: ``measured_image`` (like the paper's experimental images).
CONDITIONS = {"truncated_clean": (True, None), "whole_clean": (False, None),
              "truncated_simexp": (True, "simexp"),
              "whole_simexp": (False, "simexp"),
              "truncated_measured": (True, "measured"),
              "whole_measured": (False, "measured")}


def _evaluate(model, sim) -> tuple[dict, np.ndarray, np.ndarray]:
  est = shape_net.predict(sim["pattern"], sim["valid"], model)
  names = solids.CLASSES
  label = sim["label"]
  ranked = np.array([[names.index(c) for c, _ in e.classes[:3]] for e in est])
  radius = np.array([e.radius_nm for e in est]) / model.geometry.box_nm
  rad_true = np.exp(sim["log_radius"])
  stretch = np.array([e.stretch for e in est])
  errs = []
  for e, p, lab in zip(est, sim["params"], label):
    name = names[lab]
    if name in shape_net.NO_ORIENTATION:
      continue
    # The network's own rotation (not reduced by a wrong class's group).
    errs.append(shape_net.orientation_error_deg(
        e.rotation if e.rotation is not None else np.eye(3),
        p.rotation_matrix(), name))
  out = {
      "top1": float((ranked[:, 0] == label).mean()),
      "top3": float((ranked == label[:, None]).any(1).mean()),
      "radius_median_rel_err": float(np.median(np.abs(radius / rad_true - 1))),
      "stretch_median_rel_err": float(np.median(np.abs(
          stretch / np.exp(sim["log_stretch"]) - 1))),
      "orientation_median_deg": float(np.median(errs)) if errs else None,
      "orientation_within_15deg": float(np.mean(np.asarray(errs) <= 15))
      if errs else None,
  }
  return out, ranked[:, 0], label


def _timing(model) -> float:
  rng = np.random.default_rng(0)
  pats = rng.random((32, 128, 128)).astype(np.float32)
  valid = np.ones_like(pats, bool)
  shape_net.predict(pats, valid, model)                # compile
  times = []
  for _ in range(5):
    t = time.perf_counter()
    shape_net.predict(pats, valid, model)
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times)) / 32


def _orientation_fit(model, report):
  sim = shape_net.simulate(_SEED.value, np.arange(_FIT.value), model.geometry,
                           truncated=False, filtered=False)
  est = shape_net.predict(sim["pattern"], sim["valid"], model)
  errs = {"network": [], "fit_top1": [], "fit_true_class": []}
  seconds = []
  for e, p, pat, val in zip(est, sim["params"], sim["pattern"], sim["valid"]):
    name = p.polyhedron
    if name in shape_net.NO_ORIENTATION:
      continue
    truth = p.rotation_matrix()
    errs["network"].append(shape_net.orientation_error_deg(
        e.rotation if e.rotation is not None else np.eye(3), truth, name))
    t = time.perf_counter()
    fitted = shape_net.fit_orientation(pat, val, e, model.geometry)
    seconds.append(time.perf_counter() - t)
    errs["fit_top1"].append(shape_net.orientation_error_deg(
        fitted.rotation if fitted.rotation is not None else np.eye(3),
        truth, name))
    true_first = dataclasses.replace(
        e, classes=((name, 1.0),) + tuple(c for c in e.classes
                                          if c[0] != name))
    bound = shape_net.fit_orientation(pat, val, true_first, model.geometry)
    errs["fit_true_class"].append(shape_net.orientation_error_deg(
        bound.rotation, truth, name))
    report.add({"orientation_fit_solid": name,
                **{k: round(v[-1], 2) for k, v in errs.items()}})
  report.add({"condition": "whole_clean_orientation", "n": len(seconds),
              **{f"{k}_median_deg": round(float(np.median(v)), 2)
                 for k, v in errs.items()},
              **{f"{k}_within_15deg": round(float(np.mean(np.asarray(v)
                                                          <= 15)), 3)
                 for k, v in errs.items()},
              "fit_seconds_per_pattern": round(float(np.median(seconds)), 2)})


def _rerank(model, report):
  sim = shape_net.simulate(_SEED.value, np.arange(_RERANK.value),
                           model.geometry, truncated=True, filtered=False)
  est = shape_net.predict(sim["pattern"], sim["valid"], model)
  net_hits, fit_hits, seconds = [], [], []
  for e, p, pat, val in zip(est, sim["params"], sim["pattern"], sim["valid"]):
    t = time.perf_counter()
    fitted = shape_net.fit_orientation(pat, val, e, model.geometry, classes=3)
    seconds.append(time.perf_counter() - t)
    net_hits.append(e.classes[0][0] == p.polyhedron)
    fit_hits.append(fitted.classes[0][0] == p.polyhedron)
  report.add({"condition": "truncated_clean_rerank_by_fit", "n": len(est),
              "network_top1": float(np.mean(net_hits)),
              "fit_of_top3_top1": float(np.mean(fit_hits)),
              "fit_seconds_per_pattern": round(float(np.median(seconds)), 2)})


def _recon_geometry():
  """The geometry of :func:`_reconstructed`'s densities (the bundled
  reconstruction network's)."""
  return pretrained.load_model(None).geometry


def _reconstructed(pattern, valid) -> reconstruct.Reconstruction:
  """The pattern's reconstruction: default refinement, no shape network."""
  return reconstruct.reconstruct(pattern, valid, shape_model=None)


def _matched(pattern, valid):
  """The basis classes matched to the pattern's reconstruction (default
  refinement, no shape network), the seconds the matching took (not the
  reconstruction) and the reconstruction's grid size."""
  density = _reconstructed(pattern, valid).density
  t = time.perf_counter()
  ranked = list(shape_net.match_basis(density))
  return ranked, time.perf_counter() - t, density.shape[-1]


def _match_basis(model, report):
  """The class read off the reconstruction (msftnet.reconstruct, default
  refinement) by :func:`shape_net.match_basis` against the network's, on
  the same truncated clean solids; and off the true body (the matcher's
  bound: whole, unstretched templates against truncated, stretched
  solids)."""
  sim = shape_net.simulate(_SEED.value, np.arange(_MATCH.value),
                           model.geometry, truncated=True, filtered=False)
  est = shape_net.predict(sim["pattern"], sim["valid"], model)
  hits = {k: [] for k in ("network", "match_reconstruction", "match_truth")}
  seconds = []
  for i, (e, p) in enumerate(zip(est, sim["params"])):
    name = p.polyhedron
    matched, took, grid = _matched(sim["pattern"][i], sim["valid"][i])
    ranked = [c for c, _ in matched]
    seconds.append(took)
    body = np.asarray(rasterize(*solids.half_spaces(p), grid))
    truth = [c for c, _ in shape_net.match_basis(body)]
    net = [c for c, _ in e.classes]
    for key, order in (("network", net), ("match_reconstruction", ranked),
                       ("match_truth", truth)):
      hits[key].append((order[0] == name, name in order[:3]))
    report.add({"match_solid": name, "network_top3": net[:3],
                "match_top3": ranked[:3], "truth_match_top3": truth[:3]})
  report.add({"condition": "truncated_clean_match_basis", "n": len(est),
              "seed": _SEED.value,
              **{f"{k}_top1": round(float(np.mean([h[0] for h in v])), 3)
                 for k, v in hits.items()},
              **{f"{k}_top3": round(float(np.mean([h[1] for h in v])), 3)
                 for k, v in hits.items()},
              "match_seconds_per_pattern": round(float(np.median(seconds)),
                                                 1)})


def _from_fit(model, report):
  """The class read by the network off the fitted answer's simulated
  pattern (:func:`shape_net.predict_fit`) against its reading of the
  pattern itself, on the first ``--from_fit`` truncated solids, clean and
  through the simulated-experiment filter."""
  geometry = _recon_geometry()
  for cond in ("truncated_clean", "truncated_simexp"):
    sim = shape_net.simulate(_SEED.value, np.arange(_FROM_FIT.value),
                             model.geometry, truncated=True,
                             filtered=cond == "truncated_simexp")
    est = shape_net.predict(sim["pattern"], sim["valid"], model)
    # network: the pattern as it comes (the filter may move its centre);
    # pattern_centred: the same network on the pattern centred where the
    # answer was refined (what the reconstruction keeps beside the fit's
    # reading); fit: the fitted answer's reading (what it reports).
    hits = {"network": [], "pattern_centred": [], "fit": []}
    radius = {"network": [], "pattern_centred": [], "fit": []}
    seconds = []
    for i, (e, p) in enumerate(zip(est, sim["params"])):
      # As a user gets it: the reconstruction reads its answer.
      rec = reconstruct.reconstruct(sim["pattern"][i], sim["valid"][i],
                                    shape_model=model)
      f = rec.shape
      t = time.perf_counter()
      shape_net.predict_fit(rec.density, rec.dark_level, geometry, model)
      seconds.append(time.perf_counter() - t)
      true_r = float(np.exp(sim["log_radius"][i])) * model.geometry.box_nm
      for key, x in (("network", e), ("pattern_centred", f.pattern_reading),
                     ("fit", f)):
        order = [c for c, _ in x.classes]
        hits[key].append((order[0] == p.polyhedron,
                          p.polyhedron in order[:3]))
        radius[key].append(abs(x.radius_nm / true_r - 1))
      report.add({"from_fit_solid": p.polyhedron, "condition": cond,
                  "network_top3": [c for c, _ in e.classes[:3]],
                  "pattern_centred_top3": [
                      c for c, _ in f.pattern_reading.classes[:3]],
                  "fit_top3": [c for c, _ in f.classes[:3]]})
    report.add({"condition": f"{cond}_from_fit", "n": _FROM_FIT.value,
                "seed": _SEED.value,
                **{f"{k}_top1": round(float(np.mean([h[0] for h in v])), 3)
                   for k, v in hits.items()},
                **{f"{k}_top3": round(float(np.mean([h[1] for h in v])), 3)
                   for k, v in hits.items()},
                **{f"{k}_radius_median_rel_err":
                   round(float(np.median(v)), 4) for k, v in radius.items()},
                "fit_reading_ms_per_pattern": round(
                    1e3 * float(np.median(seconds)), 1)})


def _confusion_figure(pred, label, path):
  from matplotlib.figure import Figure
  from msftnet import report
  n = len(solids.CLASSES)
  m = np.zeros((n, n))
  for p, t in zip(pred, label):
    m[t, p] += 1
  m = m / np.maximum(m.sum(1, keepdims=True), 1)
  fig = Figure(figsize=(10, 9))
  ax = fig.subplots()
  im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(n), solids.CLASSES, rotation=90, fontsize=7)
  ax.set_yticks(range(n), solids.CLASSES, fontsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  for i in range(n):
    for j in range(n):
      if m[i, j] >= 0.05:
        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5,
                color="white" if m[i, j] > 0.5 else "black")
  fig.colorbar(im, ax=ax, fraction=0.046)
  ax.set_title("shape network: truncated clean solids, row-normalised")
  fig.tight_layout()
  report.save_figure(fig, path)


def main(argv):
  del argv
  model = shape_net.load(_MODEL.value)
  report = Report()
  for cond, (trunc, filt) in CONDITIONS.items():
    sim = shape_net.simulate(_SEED.value, np.arange(_N.value),
                             model.geometry, truncated=trunc,
                             filtered=filt == "simexp",
                             measured=filt == "measured")
    res, pred, label = _evaluate(model, sim)
    report.add({"condition": cond, "seed": _SEED.value, "n": _N.value, **res})
    if cond == "truncated_clean":
      confusion = (pred, label)
      per_class = {solids.CLASSES[c]: float((pred[label == c] == c).mean())
                   for c in range(len(solids.CLASSES)) if (label == c).any()}
      report.add({"condition": cond, "per_class_top1": per_class})
  report.add({"ms_per_pattern_batch32": round(_timing(model), 3)})
  if _FIT.value:
    _orientation_fit(model, report)
  if _RERANK.value:
    _rerank(model, report)
  if _MATCH.value:
    _match_basis(model, report)
  if _FROM_FIT.value:
    _from_fit(model, report)
  if _EXPERIMENT.value:
    with open(os.path.join(_EXPERIMENT.value, "labels.csv")) as f:
      labels = {os.path.basename(r["scatter"]): r["polyhedron"]
                for r in csv.DictReader(f)}
    hits = match_hits = fit_hits = 0
    for name, truth in sorted(labels.items()):
      pat, val = measured.load_measurement(
          os.path.join(_EXPERIMENT.value, name), experimental=True)
      e = shape_net.predict(pat[None], val[None], model)[0]
      top3 = [c for c, _ in e.classes[:3]]
      hits += truth in top3
      row = {"experiment": name, "published_fit": truth, "top3": top3,
             "probabilities": [round(p, 3) for _, p in e.classes[:3]],
             "radius_nm": round(e.radius_nm, 1), "in_top3": truth in top3}
      if _MATCH.value:
        ranked = _matched(pat, val)[0]
        row.update(match_top3=[c for c, _ in ranked[:3]],
                   match_iou=[round(v, 3) for _, v in ranked[:3]],
                   match_in_top3=truth in [c for c, _ in ranked[:3]])
        match_hits += row["match_in_top3"]
      if _FROM_FIT.value:
        f = reconstruct.reconstruct(pat, val, shape_model=model).shape
        row.update(pattern_centred_top3=[
            c for c, _ in f.pattern_reading.classes[:3]],
                   fit_top3=[c for c, _ in f.classes[:3]],
                   fit_probabilities=[round(p, 3) for _, p in f.classes[:3]],
                   fit_in_top3=truth in [c for c, _ in f.classes[:3]])
        fit_hits += row["fit_in_top3"]
      report.add(row)
    report.add({"experiment_in_top3": hits, "of": len(labels),
                **({"match_in_top3": match_hits} if _MATCH.value else {}),
                **({"fit_in_top3": fit_hits} if _FROM_FIT.value else {})})
  if _CONFUSION.value:
    _confusion_figure(*confusion, _CONFUSION.value)
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
