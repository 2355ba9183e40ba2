"""Tests of the evaluator (msftnet.evaluation); the studies end to end run
through experiments.evaluate in test_reconstruct.py."""

import json
import types

import numpy as np
import pytest

from msftnet import evaluation
from msftnet import losses
from msftnet import records
from msftnet import solids
from msftnet.geometry import Geometry
from msftnet.raster import rasterize

SMALL = Geometry(n_voxels=32, detector_px=64)


def _solid(name, size, **kw):
  p = solids.SolidParams(name, size=size, **kw)
  return np.asarray(rasterize(*solids.half_spaces(p), 32))


def test_shape_metrics_of_exact_shifted_and_wrong_predictions():
  cube = _solid("Cube", 0.5, theta=0.3, phi=0.2, alpha=0.5)
  moved = np.roll(cube, (2, -1, 3), axis=(0, 1, 2))
  tetra = _solid("Tetrahedron", 0.35)
  truth = np.stack([cube, cube, cube])
  rows = evaluation.shape_metrics(np.stack([cube, moved, tetra]), truth, SMALL)
  exact, shifted, wrong = rows
  assert exact["scatter"] == pytest.approx(0.0, abs=1e-9)
  assert exact["iou"] == exact["aligned_iou"] == 1.0
  # A translation changes IoU, not the pattern's modulus or the aligned IoU.
  assert shifted["iou"] < 0.8 and shifted["aligned_iou"] == pytest.approx(1.0)
  assert shifted["scatter"] < 1e-6
  assert wrong["scatter"] > 1e-3 and wrong["aligned_iou"] < 0.6
  assert exact["vol_pred"] == exact["vol_true"] == pytest.approx(
      (cube > 0.5).mean())
  # The truth's pattern given directly gives the same numbers.
  given = evaluation.shape_metrics(
      np.stack([cube, moved, tetra]), truth, SMALL,
      target_pattern=np.asarray(losses.pattern_of(truth, SMALL)))
  assert [r["scatter"] for r in given] == pytest.approx(
      [r["scatter"] for r in rows], rel=1e-6, abs=1e-12)
  with pytest.raises(ValueError, match=r"\[B, N, N, N\]"):
    evaluation.shape_metrics(cube, cube, SMALL)


def test_summarize_means_and_standard_error():
  rows = [{"scatter": 1.0, "iou": 0.5}, {"scatter": 3.0, "iou": 0.7}]
  s = evaluation.summarize(rows)
  assert s["scatter"] == 2.0 and s["iou"] == pytest.approx(0.6)
  assert s["scatter_sem"] == pytest.approx(1.0 / np.sqrt(2))
  assert s["samples"] == 2
  with pytest.raises(ValueError, match="no rows"):
    evaluation.summarize([])


def test_settings_refuse_empty_studies():
  with pytest.raises(ValueError, match="n_test"):
    evaluation.Settings(n_test=0)


def test_results_tables_from_stored_rows(tmp_path):
  s = evaluation.Settings(out=str(tmp_path), figure_dir=str(tmp_path / "f"))
  row = {"nr": 1, "class": "Cube", "aligned_iou_network": 0.4,
         "aligned_iou_refined": 0.8, "iou_network": 0.3, "iou_refined": 0.7,
         "scatter_network": 0.02, "scatter_refined": 0.01,
         "pattern_loss_network": 3e-3, "pattern_loss_refined": 1e-3,
         "loss_ratio_refined": 1.5, "seconds_per_pattern": 2.0}
  records.write_jsonl(tmp_path / "testset_clean.jsonl",
                      [row, {**row, "nr": 2, "aligned_iou_refined": 0.6}])
  records.write_jsonl(tmp_path / "crop.jsonl", [
      {"nr": 1, "radius_px": 16, "scatter_network": 0.05,
       "scatter_refined": 0.04, "aligned_iou_network": 0.3,
       "aligned_iou_refined": 0.35}])
  (tmp_path / "experiment").mkdir()
  (tmp_path / "experiment" / "barke5.json").write_text(json.dumps({
      "published_class": "Icosahedron", "fit_class": "Cube",
      "fit_loss": 7e-3, "fit_loss_published_class": None,
      "network_loss": 5e-3, "refined_loss": 4e-3}))
  model = types.SimpleNamespace(path=str(tmp_path), info={"step": 9},
                                width=2)
  text = evaluation.results_markdown(model, s)
  assert "clean input (2 solids, seed 20261125" in text
  assert "| refined | 0.700 | 0.700 | 0.700 |" in text      # median, means
  assert "| Cube | 2 | 0.40 -> 0.70 | 1.50 |" in text
  assert "| 16 | 0.05000 | 0.04000 | 0.300 | 0.350 |" in text
  # A published class outside the fitted ones is "n/a", not a crash.
  assert "| barke5 | Icosahedron | Cube (7.00e-03) | n/a | 5.00e-03 |" in text
  assert "simulated_experiment input" not in text
