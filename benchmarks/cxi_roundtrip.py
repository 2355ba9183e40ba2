r"""Raw counts in a CXI run vs the same patterns in the paper's format.

  python -m benchmarks.cxi_roundtrip [--n=4] [--seed=4242] [--photons=1e7]
      [--refine_steps=50] [--counts_dark=100] [--model=DIR] [--rescaled_png]
      [--json_out=FILE]

``--n`` truncated test solids (``DataConfig(test_set=True)``, data seed
``--seed``, never used for tuning) are simulated at 64^3; their intensities
become Poisson photon counts (``--photons`` at the brightest pixel). The
counts are written as one CXI run ``[N, 128, 128]`` (int32, soft-linked from
``entry_1/data_1/data``) with a CXI mask marking a beam stop (radius 6 px)
and a detector gap (4 columns) as bad; the same counts, log-scaled the
paper's way (``log(I + 100)``, min-max normalised) and masked, are written
as 16-bit PNGs with the valid mask as a separate PNG. Both go through
``msftnet.measured`` (auto input scale) and ``msftnet.reconstruct`` with the
bundled model; one JSON line per solid with the aligned IoU of each route
against the true 64^3 object, and a summary line.

``--rescaled_png`` adds a third route, the reproducibility floor: the same
log pattern mapped to ``0.8 p + 0.1`` before it is written as a 16-bit PNG.
It holds the same information as the paper's PNG (the objective is
invariant to an affine map of the pattern; only the network's input and
float rounding change), so the difference between the two PNG routes is how
far the reconstruction moves for an input that means the same thing, the
yardstick for the counts route's difference.
"""

from __future__ import annotations

import os
import tempfile
import time

from absl import app
from absl import flags
import h5py
import numpy as np

import msftnet
from benchmarks.jsonlines import Report
from msftnet import data as data_lib
from msftnet import measured
from msftnet import metrics
from msftnet import paper_io
from msftnet import pretrained
from msftnet import reconstruct as recon

_N = flags.DEFINE_integer("n", 4, "Test solids.")
_SEED = flags.DEFINE_integer("seed", 4242, "Data seed of the test solids.")
_PHOTONS = flags.DEFINE_float("photons", 1e7, "Photons at the brightest "
                              "pixel.")
_STEPS = flags.DEFINE_integer("refine_steps", recon.RefineConfig.steps,
                              "Fine refinement steps.")
_DARK = flags.DEFINE_float("counts_dark", measured.COUNTS_DARK,
                           "Photons added before the log of the CXI counts.")
_MODEL = flags.DEFINE_string("model", None, "Model directory (default bundled).")
_RESCALED = flags.DEFINE_bool("rescaled_png", False, "Also reconstruct the "
                              "PNG pattern mapped to 0.8 p + 0.1 (the "
                              "reproducibility floor).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def _mask(m: int = 128) -> np.ndarray:
  """Bad pixels: a beam stop at the centre and a vertical detector gap."""
  r, c = np.mgrid[:m, :m] - m // 2
  bad = (r**2 + c**2 < 6**2) | ((c >= 20) & (c < 24))
  return bad.astype(np.uint8)


def main(argv):
  del argv
  report = Report()
  geometry = msftnet.Geometry()
  cfg = data_lib.DataConfig(n_samples=_N.value, seed=_SEED.value,
                            resolution=64, test_set=True)
  params = [data_lib.sample_params(cfg, i) for i in range(_N.value)]
  batch = data_lib.simulate_batch(cfg, params, list(range(_N.value)))
  truth = batch["density"]
  inten = np.asarray(msftnet.intensity(truth, geometry), np.float64)
  rng = np.random.default_rng(_SEED.value)
  counts = rng.poisson(inten / inten.max(axis=(1, 2), keepdims=True)
                       * _PHOTONS.value).astype(np.int32)
  bad = _mask()
  model = pretrained.load_model(_MODEL.value)
  config = recon.RefineConfig(steps=_STEPS.value)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    run = os.path.join(tmp, "run.cxi")
    with h5py.File(run, "w") as f:
      f["entry_1/instrument_1/detector_1/data"] = counts
      f["entry_1/instrument_1/detector_1/mask"] = bad
      f["entry_1/data_1/data"] = h5py.SoftLink(
          "/entry_1/instrument_1/detector_1/data")
    frames, errors = measured.load_many([run], counts_dark=_DARK.value)
    if errors:
      raise SystemExit(errors[0][1])
    paper_io.write_pattern(os.path.join(tmp, "valid.png"), 1.0 - bad,
                           bits=16)
    for k in range(_N.value):
      logp = np.asarray(msftnet.log_pattern(counts[k].astype(np.float32)))
      logp = np.where(bad == 0, logp, 0.0)
      images = {"paper_png": logp}
      if _RESCALED.value:
        images["paper_png_rescaled"] = np.where(bad == 0, 0.8 * logp + 0.1,
                                                0.0)
      pat_cxi, val_cxi, info = (frames[k].pattern, frames[k].valid,
                                frames[k].info)
      routes = [("cxi_counts", pat_cxi, val_cxi)]
      for route, img in images.items():
        png = os.path.join(tmp, f"shot{k}_{route}.png")
        paper_io.write_pattern(png, img, bits=16)
        pat, val = measured.load_measurement(
            png, mask=os.path.join(tmp, "valid.png"))
        assert np.array_equal(val, val_cxi)
        routes.append((route, pat, val))
      row = {"benchmark": "cxi_roundtrip", "solid": params[k].polyhedron,
             "frame": k, "input_scale_cxi": info["input_scale"],
             "valid_fraction": float(val_cxi.mean())}
      for route, pat, val in routes:
        t = time.perf_counter()
        out = recon.reconstruct(pat, val, model=model, config=config)
        row[f"aligned_iou_{route}"] = round(
            metrics.aligned_iou(out.density, truth[k]), 4)
        row[f"loss_{route}"] = float(out.paper_loss_after)
        row[f"start_{route}"] = str(np.asarray(out.start_name).ravel()[0])
        row[f"seconds_{route}"] = round(time.perf_counter() - t, 1)
      row["aligned_iou_difference"] = round(
          row["aligned_iou_cxi_counts"] - row["aligned_iou_paper_png"], 4)
      if _RESCALED.value:
        row["aligned_iou_difference_rescaled"] = round(
            row["aligned_iou_paper_png_rescaled"]
            - row["aligned_iou_paper_png"], 4)
      rows.append(row)
      report.add(row)
  diffs = np.abs([r["aligned_iou_difference"] for r in rows])
  summary = {"benchmark": "cxi_roundtrip", "summary": True,
             "n": _N.value, "seed": _SEED.value, "photons": _PHOTONS.value,
             "median_aligned_iou_cxi_counts": float(np.median(
                 [r["aligned_iou_cxi_counts"] for r in rows])),
             "median_aligned_iou_paper_png": float(np.median(
                 [r["aligned_iou_paper_png"] for r in rows])),
             "max_abs_difference": float(diffs.max()),
             "within_0_05": int(np.sum(diffs <= 0.05))}
  if _RESCALED.value:
    floor = np.abs([r["aligned_iou_difference_rescaled"] for r in rows])
    summary.update(max_abs_difference_rescaled=float(floor.max()),
                   within_0_05_rescaled=int(np.sum(floor <= 0.05)))
  report.add(summary)
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
