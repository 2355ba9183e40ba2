"""Tests of runs over many inputs (msftnet.runs); the launchers that call it
run end to end in test_reconstruct.py and test_fitting.py."""

import json

import numpy as np
import pytest

from msftnet import measured
from msftnet import pretrained
from msftnet import reconstruct as recon
from msftnet import runs


def test_select_work_shares_inputs_and_skips_finished_ones(tmp_path):
  good = [measured.Frame(f"s{i}", f"s{i}.png", None, None, {})
          for i in range(7)]
  shares = [runs.select_work(good, str(tmp_path), process_id=p,
                             num_processes=3)[0] for p in range(3)]
  stems = sorted(g.stem for share in shares for g in share)
  assert stems == sorted(g.stem for g in good)            # each exactly once
  assert [g.stem for g in shares[1]] == ["s1", "s4"]
  (tmp_path / "s3.json").write_text("{}")
  todo, skipped = runs.select_work(good, str(tmp_path))
  assert skipped == ["s3"] and "s3" not in [g.stem for g in todo]
  todo, skipped = runs.select_work(good, str(tmp_path), overwrite=True)
  assert len(todo) == 7 and not skipped
  with pytest.raises(ValueError, match="process_id"):
    runs.select_work(good, str(tmp_path), process_id=3, num_processes=3)


def test_reconstruct_inputs_writes_every_input_then_skips_them(
    tmp_path, tiny_model_dir):
  model = pretrained.load_model(tiny_model_dir)
  rng = np.random.default_rng(3)
  valid = np.ones((128, 128), bool)
  valid[:, :10] = False
  good = [measured.Frame(f"p{k}", f"/data/p{k}.png",
                         rng.uniform(size=(128, 128)).astype(np.float32),
                         valid, {"input_scale": "log"}) for k in range(3)]
  config = recon.RefineConfig(steps=0, centre_search=0)
  written, errors = runs.reconstruct_inputs(
      good, str(tmp_path), model, config=config, batch=2, figures=False,
      progress=False)
  assert written == ["p0", "p1", "p2"] and not errors
  for frame in good:
    stem = frame.stem
    rec = json.loads((tmp_path / f"{stem}.json").read_text())
    assert rec["input"] == frame.path and rec["input_scale"] == "log"
    assert rec["refine_steps"] == 0 and rec["start"] == "network"
    assert "masked_mse" in rec["candidate_loss_is"]     # the network alone
    assert rec["valid_fraction"] == pytest.approx(valid.mean())
    assert np.load(tmp_path / f"{stem}_density.npy").shape == (64, 64, 64)
    assert not (tmp_path / f"{stem}.png").exists()       # figures=False
  todo, skipped = runs.select_work(good, str(tmp_path))
  assert not todo and skipped == ["p0", "p1", "p2"]


def test_the_poisson_objective_turns_log_inputs_into_errors(
    tmp_path, tiny_model_dir):
  """A run with the Poisson objective cannot fit a log pattern's counts:
  each such input is one error naming it, the others would go on."""
  model = pretrained.load_model(tiny_model_dir)
  good = [measured.Frame(f"p{k}", f"/data/p{k}.png",
                         np.full((128, 128), 0.5, np.float32),
                         np.ones((128, 128), bool), {"input_scale": "log"})
          for k in range(2)]
  config = recon.RefineConfig(steps=1, coarse_steps=1, objective="poisson")
  written, errors = runs.reconstruct_inputs(
      good, str(tmp_path), model, config=config, figures=False,
      progress=False)
  assert not written and [e[0] for e in errors] == ["/data/p0.png",
                                                    "/data/p1.png"]
  assert all("Poisson objective needs photon counts" in e[1]
             and "read as a log pattern" in e[1] for e in errors)
  assert not list(tmp_path.glob("p*"))
  rng = np.random.default_rng(0)
  pattern = rng.uniform(size=(128, 128)).astype(np.float32)
  with pytest.raises(ValueError, match="needs the photon counts of each"):
    recon.reconstruct(pattern, model=model, config=config)
  with pytest.raises(ValueError, match="pattern 0 has no usable photon"):
    recon.reconstruct(pattern, model=model, config=config,
                      photons=(3.0, 2.0, 100.0))


def test_shape_fields_warn_when_the_radii_disagree():
  from msftnet import shape_net
  est = shape_net.ShapeEstimate(classes=(("Cube", 0.9), ("Sphere", 0.1)),
                                radius_nm=40.0, stretch=1.1,
                                rotation=np.eye(3))
  rec = runs.shape_fields(est, 38.0)
  assert rec["radius_nm_reconstruction"] == pytest.approx(38.0)
  assert rec["shape_classes"][0] == {"class": "Cube", "probability": 0.9}
  assert "shape_warning" not in rec
  far = runs.shape_fields(est, 80.0)
  assert "40 nm" in far["shape_warning"] and "80 nm" in far["shape_warning"]
  assert "shape_warning" in runs.shape_fields(est, 0.0)      # empty result
  assert runs.shape_fields(None, 38.0) == {
      "radius_nm_reconstruction": pytest.approx(38.0)}
  # A reading of the fitted answer: the measured pattern's own reading is
  # checked too (it says whether the pattern is like the training data).
  import dataclasses
  seen = dataclasses.replace(est, radius_nm=90.0)
  fit = dataclasses.replace(est, source="fitted answer", pattern_reading=seen)
  warned = runs.shape_fields(fit, 38.0)["shape_warning"]
  assert "measured pattern itself" in warned and "90 nm" in warned
  assert "40 nm" not in warned
  agreed = dataclasses.replace(fit, pattern_reading=est)
  assert "shape_warning" not in runs.shape_fields(agreed, 38.0)
  both = runs.shape_fields(fit, 80.0)["shape_warning"]
  assert "misreads even the answer's own pattern" in both
  # The readings' classes disagree: the class is uncertain.
  other = dataclasses.replace(est, classes=(("Tetrahedron", 0.99),
                                            ("Cube", 0.01)))
  split = dataclasses.replace(fit, pattern_reading=other)
  warned = runs.shape_fields(split, 38.0)["shape_warning"]
  assert "as Tetrahedron" in warned and "class is uncertain" in warned
