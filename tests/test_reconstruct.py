"""Tests of reconstruction (msftnet.reconstruct, msftnet.pretrained,
experiments.reconstruct, experiments.demo)."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import msftnet
from msftnet import Geometry
from msftnet import Material
from msftnet import metrics
from msftnet import pretrained
from msftnet import reconstruct as recon
from msftnet.refine import measurement as meas
from msftnet.refine import polytope as refine_polytope
from msftnet.refine import trust
from msftnet.refine import voxels

from conftest import solid_volume

ROOT = pathlib.Path(__file__).parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "experiment" / "barke5.png"


# The same step counts as the launcher tests below: their compiled refinement
# is then shared through the persistent compilation cache.
QUICK = recon.RefineConfig(steps=2, coarse_steps=2)


@pytest.mark.parametrize("method", ["polytope", "voxels"])
def test_reconstruct_batch_and_single_agree(tiny_model_dir, method):
  # Each pattern is reconstructed on its own by the same compiled functions,
  # so batch and single calls compute the same thing in the same order:
  # equal to the last bit (no tolerance to tune per machine).
  model = pretrained.load_model(tiny_model_dir)
  rng = np.random.default_rng(0)
  pats = rng.uniform(size=(2, 128, 128)).astype(np.float32)
  valid = np.ones((128, 128), bool)
  valid[60:68, 60:68] = False
  config = dataclasses.replace(QUICK, method=method, centre_search=2)
  batch = recon.reconstruct(pats, valid, model=model, config=config)
  single = recon.reconstruct(pats[1], valid, model=model, config=config)
  assert batch.density.shape == (2, 64, 64, 64)
  assert single.density.shape == (64, 64, 64)
  np.testing.assert_array_equal(single.density, batch.density[1])
  assert single.paper_loss_after == batch.paper_loss_after[1]
  if method != "polytope":
    return                       # the network-alone part is method-free
  net_only = recon.reconstruct(pats, valid, model=model, refine_steps=0,
                               config=dataclasses.replace(config,
                                                          centre_search=0))
  assert list(net_only.start_name) == ["network", "network"]
  np.testing.assert_allclose(net_only.density * 1.0,
                             np.asarray(model(np.where(valid, pats, 0)))
                             * np.asarray(voxels.support_mask(64)), atol=1e-6)
  # The network alone runs on the whole batch: equal to single calls up to
  # float32 rounding.
  one = recon.reconstruct(pats[1], valid, model=model, refine_steps=0,
                          config=dataclasses.replace(config, centre_search=0))
  np.testing.assert_allclose(one.density, net_only.density[1], atol=1e-6)
  np.testing.assert_allclose(one.paper_loss_after,
                             net_only.paper_loss_after[1], rtol=1e-4)
  # The confidence says where it was calibrated; the shape network reads
  # every pattern.
  assert any("calibrated on the polytope" in r
             for r in net_only.confidence_reasons[0])
  assert not any("calibrated on" in r for r in batch.confidence_reasons[0])
  assert net_only.shape[0].classes[0][0] in msftnet.solids.CLASSES
  bare = recon.reconstruct(pats[1], valid, model=model, refine_steps=0,
                           config=config, shape_model=None)
  assert bare.shape is None


def test_reconstruct_returns_ranked_candidates_and_finds_the_centre(
    tiny_model_dir):
  truth = solid_volume("Octahedron", 0.6, n=64, theta=0.7, phi=0.3, alpha=1.1)
  g = Geometry()
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(truth)[None], g, jnp.asarray([-3.0])))[0]
  from msftnet import centre
  moved, valid = centre.shift_pattern(pattern, None, (-2, 3))
  # One convex body's candidates (two bodies: their own test below).
  config = dataclasses.replace(QUICK, keep=2, centre_search=4,
                               two_bodies=False)
  out = recon.reconstruct(moved, valid, model=tiny_model_dir, config=config)
  assert tuple(out.centre_shift) == (2, -3)
  assert out.candidate_density.shape == (2, 64, 64, 64)
  assert out.candidate_loss[0] <= out.candidate_loss[1]
  np.testing.assert_array_equal(out.density, out.candidate_density[0])
  assert out.start_name == out.candidate_name[0]
  names = refine_polytope.polytope_starts(out.initial_density, pattern,
                                np.ones_like(valid), g, config)[2]
  assert names[0] == "network" and len(names) == 10
  assert set(out.candidate_name) <= set(names)
  # The simulated pattern comes back in the input's pixel frame.
  assert out.pattern.shape == (128, 128)
  assert metrics.pearson_r(out.pattern, moved, valid) > 0.5


def test_a_doubtful_result_is_refined_again_at_other_centres(tiny_model_dir):
  """``centre_candidates``: a low-confidence result is refined at the other
  candidate centres and the fit with the least unexplained variance kept,
  its reasons naming what was tried; a confident one is left alone."""
  from msftnet import centre
  rng = np.random.default_rng(3)
  noise = rng.uniform(size=(128, 128)).astype(np.float32)
  plain = recon.reconstruct(noise, model=tiny_model_dir,
                            config=dataclasses.replace(QUICK,
                                                       centre_candidates=1))
  assert plain.confidence < trust.LOW_CONFIDENCE     # noise: no shape
  assert "centres_tried" not in plain.signals
  config = dataclasses.replace(QUICK, centre_candidates=3)
  again = recon.reconstruct(noise, model=tiny_model_dir, config=config)
  cands = centre.centre_candidates(noise, None, k=3)
  assert again.signals["centres_tried"] == len(cands) > 1
  assert again.signals["centre_margin"] >= 0.0
  assert 0.0 <= again.signals["centre_agreement"] <= 1.0
  # The confidence is that of the signals with the centre's in them.
  assert float(again.confidence) == trust.confidence(again.signals)
  assert tuple(again.centre_shift) in cands
  assert (again.signals["unexplained_fraction"]
          <= plain.signals["unexplained_fraction"] + 1e-12)
  if tuple(again.centre_shift) != tuple(plain.centre_shift):
    assert any("centre is uncertain" in r for r in again.confidence_reasons)
  with pytest.raises(ValueError, match="centre_candidates"):
    recon.RefineConfig(centre_candidates=0)
  with pytest.raises(ValueError, match="centre_retry_below"):
    recon.RefineConfig(centre_retry_below=1.5)
  # A threshold no confidence reaches below: no retry, but the centres of
  # the rings and of the point symmetry alone, where they lie 2 px or more
  # from the chosen one (the rings' 5 px here), are checked (centre_check).
  ring = centre.ring_centre(noise, None)
  assert max(abs(a - b) for a, b in zip(ring, plain.centre_shift)) >= 2
  search = centre.search_centres(noise[None])
  assert tuple(search.ring[0]) == ring
  others = recon._other_centres(noise, None, search, 0,
                                tuple(plain.centre_shift), 1.0, config)
  assert ring in others
  checked = recon.reconstruct(noise, model=tiny_model_dir,
                              config=dataclasses.replace(
                                  config, centre_retry_below=0.0))
  assert checked.signals["centres_tried"] == 1 + len(others)
  assert tuple(checked.centre_shift) in [tuple(plain.centre_shift)] + others
  never = recon.reconstruct(noise, model=tiny_model_dir,
                            config=dataclasses.replace(
                                config, centre_retry_below=0.0,
                                centre_check=False))
  assert "centres_tried" not in never.signals


def test_a_centre_that_could_not_be_searched_is_said_and_flagged(
    tiny_model_dir):
  """A mask that leaves too few pixels near every candidate centre: the
  pattern is read about ``M // 2``, and the result says so (signal, reason,
  capped confidence, warning) instead of passing as a searched centre."""
  rng = np.random.default_rng(5)
  pattern = rng.uniform(size=(128, 128)).astype(np.float32)
  yy, xx = np.mgrid[:128, :128]
  valid = np.abs(yy - 64) + np.abs(xx - 64) > 70
  out = recon.reconstruct(pattern, valid, model=tiny_model_dir, config=QUICK)
  assert out.signals["centre_searched"] is False
  assert tuple(out.centre_shift) == (0, 0)
  assert float(out.confidence) <= trust.UNSEARCHED_CENTRE_CONFIDENCE
  assert any("centre could not be searched" in r
             for r in out.confidence_reasons)
  assert trust.warning(out.signals, float(out.confidence))
  searched = recon.reconstruct(pattern, model=tiny_model_dir, config=QUICK)
  assert searched.signals["centre_searched"] is True
  assert not any("centre could not be searched" in r
                 for r in searched.confidence_reasons)
  off = recon.reconstruct(pattern, valid, model=tiny_model_dir,
                          config=dataclasses.replace(QUICK, centre_search=0))
  assert "centre_searched" not in off.signals
  sig = dict(off.signals, centre_searched=False)
  assert trust.confidence(sig) == min(float(off.confidence),
                                      trust.UNSEARCHED_CENTRE_CONFIDENCE)


def test_a_centre_on_the_edge_of_the_search_is_said_and_flagged(
    tiny_model_dir):
  """A pattern whose centre lies beyond the search's window is read about
  the window's edge: the result says so (signal, reason, capped
  confidence); one read inside the window does not."""
  from msftnet import centre
  from msftnet import shape_net
  pattern = shape_net.simulate(3, np.arange(1))["pattern"][0]
  moved, valid = centre.shift_pattern(pattern, None, (0, -4))
  config = dataclasses.replace(QUICK, centre_search=2)
  out = recon.reconstruct(moved, valid, model=tiny_model_dir, config=config,
                          shape_model=None)
  assert out.centre_shift[1] == 2                    # the window's edge
  assert out.signals["centre_at_edge"] is True
  assert float(out.confidence) <= trust.EDGE_CENTRE_CONFIDENCE
  assert any("edge of the centre search's window" in r
             for r in out.confidence_reasons)
  inside = recon.reconstruct(moved, valid, model=tiny_model_dir,
                             config=QUICK, shape_model=None)
  assert max(abs(x) for x in inside.centre_shift) < QUICK.centre_search
  assert inside.signals["centre_at_edge"] is False
  assert not any("edge of the centre search's window" in r
                 for r in inside.confidence_reasons)


def test_the_searches_centres_are_checked_only_where_they_disagree(
    monkeypatch):
  """``centre_check``: a confident result is refined again at the rings'
  centre and the point symmetry's only where they lie 2 px or more from
  the chosen centre (and from each other); a doubtful one at every
  candidate."""
  from msftnet import centre
  pattern = np.zeros((128, 128), np.float32)
  config = recon.RefineConfig()

  def found(ring, sym, searched=True, ring_found=True):
    return centre.CentreSearch(
        shift=np.zeros((1, 2), np.int64), searched=np.asarray([searched]),
        ring=np.asarray([ring]), ring_found=np.asarray([ring_found]),
        symmetry=np.asarray([sym]))

  for ring, sym, expect in (((1, -1), (0, 1), []),
                            ((2, 0), (0, 1), [(2, 0)]),
                            ((-3, 4), (3, 3), [(-3, 4), (3, 3)]),
                            ((-3, 4), (-2, 4), [(-3, 4)]),
                            ((0, 0), (5, 5), [(5, 5)])):
    assert recon._other_centres(pattern, None, found(ring, sym), 0, (0, 0),
                                0.9, config) == expect
  # A score that could not be taken offers no centre (the rings' (0, 0)
  # means nothing there), and a pattern that could not be searched none.
  assert recon._other_centres(pattern, None,
                              found((-3, 4), (3, 3), ring_found=False), 0,
                              (-3, 4), 0.9, config) == [(3, 3)]
  assert recon._other_centres(pattern, None,
                              found((-3, 4), (3, 3), searched=False), 0,
                              (0, 0), 0.9, config) == []
  search = found((-3, 4), (3, 3))
  # Without the rings in the search, only the rings' centre is checked.
  assert recon._other_centres(pattern, None, search, 0, (0, 0), 0.9,
                              dataclasses.replace(config, centre_rings=False,
                                                  centre_radius=40)) == [
                                                      (-3, 4)]
  assert recon._other_centres(pattern, None, search, 0, (0, 0), 0.9,
                              dataclasses.replace(config,
                                                  centre_check=False)) == []
  assert recon._other_centres(pattern, None, search, 0, (0, 0), 0.9,
                              dataclasses.replace(config,
                                                  centre_search=0)) == []
  monkeypatch.setattr(centre, "centre_candidates",
                      lambda *a, **k: [(0, 0), (5, 5), (-2, 3)])
  assert recon._other_centres(pattern, None, search, 0, (0, 0), 0.1,
                              config) == [(5, 5), (-2, 3)]
  with pytest.raises(ValueError, match="centre_radius"):
    recon.RefineConfig(centre_radius=1)


def test_a_doubtful_result_is_tried_as_two_touching_bodies(small_model_dir,
                                                          monkeypatch):
  """``two_bodies``: a low-confidence result is refined again as two
  bodies; their answer replaces the one body's only where
  :func:`trust.two_bodies_better` says so, and then says what it is."""
  g = Geometry(n_voxels=32, detector_px=64)
  c = (np.arange(32) - 15.5) / 32
  x = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)
  half = np.asarray((0.0, 0.1, 0.05))
  dimer = np.max([np.clip(0.5 - (np.linalg.norm(x - s * half, axis=-1)
                                 - 0.1) * 32, 0.0, 1.0) for s in (1, -1)],
                 axis=0)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(dimer, jnp.float32)[None], g, jnp.asarray([-3.0])))[0]
  config = dataclasses.replace(QUICK, centre_candidates=1,
                               centre_retry_below=1.0, two_bodies=False)
  one = recon.reconstruct(pattern, model=small_model_dir, config=config,
                            shape_model=None)
  assert "two_body_unexplained" not in one.signals
  config = dataclasses.replace(config, two_bodies=True)
  monkeypatch.setattr(trust, "TWO_BODY_GAIN", -1e9)       # never better
  kept = recon.reconstruct(pattern, model=small_model_dir, config=config,
                            shape_model=None)
  np.testing.assert_array_equal(kept.density, one.density)
  assert kept.signals["two_body_unexplained"] >= 0.0
  assert "bodies" not in kept.signals
  monkeypatch.setattr(trust, "TWO_BODY_GAIN", 1e9)        # always better
  # A note the row carries beyond its signals stays with the two bodies.
  monkeypatch.setattr(trust, "calibration_note", lambda *a, **k: "a note")
  two = recon.reconstruct(pattern, model=small_model_dir, config=config,
                            shape_model=None)
  assert two.signals["bodies"] == 2
  # Each body's depth is recorded beside the union's.
  assert len(two.signals["body_depth_log_ratios"]) == 2
  assert "body_depth_log_ratios" not in kept.signals
  assert two.signals["one_body_unexplained"] == pytest.approx(
      one.signals["unexplained_fraction"])
  assert two.signals["unexplained_fraction"] == pytest.approx(
      kept.signals["two_body_unexplained"])
  assert any("two touching bodies" in r for r in two.confidence_reasons)
  assert "a note" in list(two.confidence_reasons)
  assert float(two.confidence) == trust.confidence(two.signals)
  assert str(two.start_name).startswith(("two balls", "candidate"))
  # A confident result is left alone, unless it leaves structured
  # residuals.
  confident = dataclasses.replace(config, centre_retry_below=0.0)
  for residual in (False, True):
    monkeypatch.setattr(trust, "structured_residual",
                        lambda sig, *a, residual=residual, **k: residual)
    out = recon.reconstruct(pattern, model=small_model_dir, config=confident,
                            shape_model=None)
    assert (out.signals.get("bodies") == 2) is residual


def test_a_two_body_answer_records_each_bodys_depth():
  """A two-body answer's signals record each body's depth along the beam
  beside the union's; the deep-body rule reads the union's (two balls
  touching along the beam: each isotropic, the union deep)."""
  g = Geometry(n_voxels=32, detector_px=64)
  c = (np.arange(32) - 15.5) / 32
  x = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)
  balls = np.stack([np.clip(0.5 - (np.linalg.norm(
      x - np.asarray((s * 0.12, 0.0, 0.0)), axis=-1) - 0.1) * 32, 0.0, 1.0)
                    for s in (1, -1)]).astype(np.float32)
  union = 1.0 - np.prod(1.0 - balls, axis=0)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(union)[None], g, jnp.asarray([-3.0])))[0]
  valid = np.ones(pattern.shape, bool)
  row = dict(density=union[None], candidate_density=union[None, None],
             dark_level=np.asarray([-3.0]), loss_after=np.asarray([1e-3]))
  as_one = recon._trust(row, pattern, valid, g, 1e-3, 0.0)["signals"][0]
  as_two = recon._trust(row, pattern, valid, g, 1e-3, 0.0,
                        bodies=balls)["signals"][0]
  assert "body_depth_log_ratios" not in as_one
  assert len(as_two["body_depth_log_ratios"]) == 2
  assert max(abs(d) for d in as_two["body_depth_log_ratios"]) < 0.2
  assert as_two["depth_log_ratio"] == as_one["depth_log_ratio"]
  assert trust.deep_body(as_two)


def test_a_refined_answer_is_read_by_the_shape_network(tiny_model_dir):
  """With a refinement, ``shape`` is the shape network's reading of the
  refined answer's noise-free pattern (``shape_net.predict_fit``), the
  pattern's own reading beside it; the network alone reads the pattern."""
  from msftnet import shape_net
  model = shape_net.load()
  pattern = shape_net.simulate(3, np.arange(1), model.geometry)["pattern"][0]
  out = recon.reconstruct(pattern, model=tiny_model_dir, config=QUICK)
  geometry = pretrained.load_model(tiny_model_dir).geometry
  fit = shape_net.predict_fit(out.density, out.dark_level, geometry,
                              model)[0]
  assert out.shape.source == "fitted answer"
  assert [c for c, _ in out.shape.classes] == [c for c, _ in fit.classes]
  net_only = recon.reconstruct(pattern, model=tiny_model_dir, config=QUICK,
                               refine_steps=0)
  assert net_only.shape.source == "pattern"
  assert net_only.shape.pattern_reading is None
  # The pattern's own reading, at the centre the answer was refined at.
  from msftnet import centre
  seen = shape_net.predict(*(x[None] for x in centre.shift_pattern(
      pattern, None, out.centre_shift)), model)[0]
  np.testing.assert_allclose(
      [q for _, q in out.shape.pattern_reading.classes],
      [q for _, q in seen.classes], atol=1e-5)
  rec = out.shape.to_json()
  assert rec["shape_source"] == "fitted answer"
  assert rec["shape_classes_pattern"] == seen.to_json()["shape_classes"]
  assert rec["radius_nm_pattern"] == pytest.approx(seen.radius_nm)
  assert "shape_classes_pattern" not in net_only.shape.to_json()
  json.dumps(rec, allow_nan=False)


@pytest.mark.parametrize("pattern, valid, expect", [
    (np.zeros((64, 64)), None, "must be \\[128, 128\\]"),
    (np.full((128, 128), np.nan), None, "NaN"),
    (np.zeros((128, 128)), np.zeros((128, 128), bool), "leaves no pixel"),
    (np.zeros((128, 128)), np.ones((64, 64), bool), "valid mask has shape"),
    (np.full((128, 128), 300.0), None, "expected a normalised log pattern"),
    (np.full((128, 128), 0.5), None, "constant inside the valid pixels"),
])
def test_reconstruct_rejects_bad_input(tiny_model_dir, pattern, valid, expect):
  with pytest.raises(ValueError, match=expect):
    recon.reconstruct(pattern, valid, model=tiny_model_dir, refine_steps=1)


def test_model_directory_round_trip_and_errors(tiny_model_dir, tmp_path):
  m = pretrained.load_model(tiny_model_dir)
  pretrained.save_model(tmp_path / "copy", m.variables, m.info, "# card\n")
  m2 = pretrained.load_model(tmp_path / "copy")
  x = np.random.default_rng(1).uniform(size=(1, 128, 128))
  np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(m2(x)))
  assert (tmp_path / "copy" / "MODEL_CARD.md").read_text() == "# card\n"
  assert m.geometry == Geometry()          # no geometry recorded: the paper's
  with pytest.raises(ValueError, match="no config.json"):
    pretrained.load_model(tmp_path)
  bad = {**m.info, "geometry": {"n_voxels": 64, "colour": "blue"}}
  pretrained.save_model(tmp_path / "bad", m.variables, bad, "# card\n")
  with pytest.raises(ValueError, match="its geometry is not valid"):
    pretrained.load_model(tmp_path / "bad")
  with pytest.raises(ValueError, match="no such model directory"):
    pretrained.load_model(tmp_path / "nothing")


def test_bundled_model_is_small_and_documented():
  root = pathlib.Path(pretrained.DEFAULT_MODEL_DIR)
  size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
  assert size < 20 * 2**20
  card = (root / "MODEL_CARD.md").read_text()
  for fact in ("experiments.train", "steps", "validation", "IoU"):
    assert fact in card
  info = json.loads((root / "config.json").read_text())
  assert info["step"] > 0 and "validation" in info


def _run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def _cxi_run(path, n=2, compression=None):
  """A CXI run of ``n`` photon-count frames on a flat 200 x 200 detector
  (30 mm, 150 um pixels; no geometry in the file), data behind a soft
  link; ``compression``: h5py dataset arguments (an hdf5plugin filter)."""
  import h5py
  from msftnet import detector as det_lib
  det = det_lib.FlatDetector(30.0, 150.0, (99.5, 99.5), 13.5)
  qy, qx, omega = det_lib.detector_q(det, (200, 200))
  inten = 1e5 * np.exp(-np.hypot(qy, qx) / 0.04) * omega
  frames = np.random.default_rng(0).poisson(inten, (n, 200, 200))
  with h5py.File(path, "w") as f:
    f.create_dataset("entry_1/instrument_1/detector_1/data",
                     data=frames.astype(np.int32), chunks=(1, 200, 200),
                     **(compression or {}))
    f["entry_1/data_1/data"] = h5py.SoftLink(
        "/entry_1/instrument_1/detector_1/data")
  return path


@pytest.mark.launcher
def test_msftnet_command_outputs_frames_and_errors(tmp_path, tiny_model_dir):
  bad = tmp_path / "bad.npy"
  np.save(bad, np.full((200, 200), np.nan))
  import hdf5plugin
  # Three frames, bitshuffle-LZ4 compressed as Jungfrau/Eiger data are;
  # --frames picks two, whose stems keep their numbers.
  run = _cxi_run(tmp_path / "run.cxi", n=3,
                 compression=hdf5plugin.Bitshuffle(cname="lz4"))
  out = tmp_path / "out"
  # The installed command (msftnet.cli), from a directory outside the
  # repository; the flat detector's geometry from flags.
  cmd = [sys.executable, "-m", "msftnet.cli", "reconstruct", f"--out={out}",
         f"--checkpoint={tiny_model_dir}", "--refine_steps=2",
         "--coarse_steps=2", "--mesh", "--detector_distance_mm=30",
         "--pixel_um=150", "--frames=0,2", str(run), str(bad)]
  res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
  assert res.returncode == 1
  errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "bad.npy" in errors[0] and "NaN" in errors[0]
  assert not (out / "bad.json").exists()
  assert not (out / "run_frame1.json").exists()
  for k in (0, 2):
    rec = json.loads((out / f"run_frame{k}.json").read_text())
    assert rec["frame"] == k and rec["n_frames"] == 3
    assert rec["input_scale"] == "counts"
    assert rec["detector"]["distance_mm"] == 30.0
    assert rec["detector"]["source"]["distance_mm"] == "given"
    assert rec["detector"]["source"]["centre_px"].startswith("assumed")
    assert 0.1 < rec["valid_fraction"] < 0.5        # the detector's q range
    assert rec["loss_refined"] <= rec["masked_loss_refined"]
    # Two candidates of one body, or three of two bodies (padding left out).
    assert rec["method"] == "polytope"
    assert len(rec["candidates"]) == (3 if rec["bodies"] == 2 else 2)
    assert rec["bodies"] == rec["trust_signals"].get("bodies", 1)
    assert rec["confidence_calibrated"] is (rec["bodies"] == 1)
    assert Geometry.from_dict(rec["geometry"]) == Geometry()
    assert rec["candidates"][0]["start"] == rec["start"]
    assert rec["candidates"][0]["loss"] <= rec["candidates"][1]["loss"]
    assert "affine_masked_mse" in rec["candidate_loss_is"]
    # Every result says how far to trust it, in a versioned record.
    assert list(rec)[0] == "schema_version" and rec["schema_version"] == 2
    assert 0.0 <= rec["confidence"] <= 1.0
    assert isinstance(rec["confidence_reasons"], list)
    assert rec["trust_signals"]["candidate_agreement"] <= 1.0
    assert (("reconstruction_warning" in rec)
            >= (rec["confidence"] < trust.LOW_CONFIDENCE))
    dens = np.load(out / f"run_frame{k}_density.npy")
    assert dens.shape == (64, 64, 64) and dens.dtype == np.float32
    assert (out / f"run_frame{k}.png").stat().st_size > 10_000
    assert (out / f"run_frame{k}_patterns.png").stat().st_size > 1_000
    if dens.max() > 0.5 > dens.min():
      assert (out / f"run_frame{k}.obj").read_text().count("\nf ") > 10
  assert not list(out.glob(".tmp-*"))
  # The run's table and report (msftnet.run_report; test_run_report).
  table = (out / "summary.csv").read_text().splitlines()
  assert [l.split(",")[0] for l in table] == ["stem", "run_frame0",
                                              "run_frame2"]
  assert (out / "summary.png").stat().st_size > 10_000
  assert (out / "index.html").read_text().count('<tr id="row-') == 2
  # A rerun would skip both frames: their JSON (written last) exists
  # (msftnet.runs.select_work, tested in test_runs).
  from msftnet import measured
  from msftnet import runs
  todo, skipped = runs.select_work(
      [measured.FrameRef(f"run_frame{k}", "run.cxi", k) for k in (0, 2)],
      str(out))
  assert not todo and skipped == ["run_frame0", "run_frame2"]


def test_reconstruct_launcher_bad_checkpoint(tmp_path):
  res = _run("experiments.reconstruct", f"--out={tmp_path}",
             f"--checkpoint={tmp_path}", str(FIXTURE))
  assert res.returncode == 1 and "no config.json" in res.stderr


def test_reconstruct_takes_the_forward_model_from_the_geometry(tiny_model_dir):
  """The refinement's physics is the geometry's (pmsft with a material
  gives other losses for the same network output); the grid is the
  network's, another is refused in one sentence."""
  model = pretrained.load_model(tiny_model_dir)
  pat = np.random.default_rng(3).uniform(size=(128, 128)).astype(np.float32)
  config = dataclasses.replace(QUICK, centre_search=0)
  plain = recon.reconstruct(pat, model=model, refine_steps=0, config=config)
  refracting = recon.reconstruct(
      pat, model=model, refine_steps=0, config=config,
      geometry=Geometry(forward_model="pmsft",
                        material=Material(0.11, 0.079)))
  np.testing.assert_array_equal(plain.density, refracting.density)
  assert plain.network_paper_loss != refracting.network_paper_loss
  with pytest.raises(ValueError, match="differs in wavelength_nm"):
    recon.reconstruct(pat, model=model, geometry=Geometry(wavelength_nm=13.0))
  # A model trained with pmsft refines with it by default.
  trained_so = dataclasses.replace(model, info={
      **model.info, "geometry": Geometry(forward_model="pmsft", material=
                                         Material(0.11, 0.079)).to_dict()})
  default = recon.reconstruct(pat, model=trained_so, refine_steps=0,
                              config=config)
  assert default.network_paper_loss == refracting.network_paper_loss


@pytest.mark.launcher
def test_demo_end_to_end_with_a_tiny_model(tmp_path, tiny_model_dir):
  # The network alone (steps=0): the refinement's programs are compiled and
  # tested by the reconstruct tests above; this checks the demo's own steps.
  from msftnet.launch import demo
  rec = demo.run(str(tmp_path), seed=1, steps=0, checkpoint=tiny_model_dir,
                 config=QUICK)
  for name in ("demo.png", "demo.json", "demo_density.npy"):
    assert (tmp_path / name).exists()
  saved = json.loads((tmp_path / "demo.json").read_text())
  assert saved["solid"]["cut"] == rec["solid"]["cut"]
  assert 0 <= saved["aligned_iou_refined"] <= 1
  assert saved["aligned_iou_refined"] >= saved["iou_refined"] - 1e-9


def test_aligned_iou_sees_through_translation_and_inversion():
  cube = solid_volume("Tetrahedron", 0.5)
  moved = np.roll(cube, (3, -2, 4), axis=(0, 1, 2))
  assert metrics.iou(moved, cube) < 0.8
  assert metrics.aligned_iou(moved, cube) == pytest.approx(1.0)
  assert metrics.aligned_iou(cube[::-1, ::-1, ::-1], cube) == pytest.approx(1.0)
  small = solid_volume("Tetrahedron", 0.3)
  assert 0 < metrics.aligned_iou(small, cube) < 0.5


@pytest.mark.launcher
def test_evaluate_experiment_study(tmp_path, tiny_model_dir):
  exp = tmp_path / "exp"
  exp.mkdir()
  for name in ("barke5", "barke6"):
    (exp / f"{name}.png").write_bytes(FIXTURE.read_bytes())
  (exp / "labels.csv").write_text(
      '"nr","scatter","polyhedron"\n5,"./barke5.png","Icosahedron"\n'
      '6,"./barke6.png","Icosahedron"\n')
  # Resumable: a cached forward fit (here planted for barke6) is used, not
  # repeated; barke5's is computed and cached.
  fits = tmp_path / "eval" / "experiment" / "fits"
  fits.mkdir(parents=True)
  planted = {"best": {"polyhedron": "Icosahedron", "paper_loss": 1.25e-3,
                      "circumradius_nm": 80.0, "stretch": 1.0},
             "per_class": {"Icosahedron": 1.25e-3}, "seconds": 1.0,
             "starts": 1, "steps": 2, "classes": 1}
  np.savez(fits / "barke6.npz", info=json.dumps(planted),
           density=np.zeros((64, 64, 64), np.float32),
           pattern=np.zeros((128, 128), np.float32))
  results = tmp_path / "results.md"
  res = _run("experiments.evaluate", f"--out={tmp_path / 'eval'}",
             f"--model={tiny_model_dir}", "--studies=experiment",
             f"--experiment_dir={exp}", f"--results={results}",
             "--fit_classes=Icosahedron", "--fit_starts=1", "--fit_steps=2",
             "--fit_coarse_steps=0", "--refine_steps=0")
  assert res.returncode == 0, res.stderr[-2000:]
  rec = json.loads((tmp_path / "eval" / "experiment" / "barke5.json")
                   .read_text())
  assert rec["fit_class"] == "Icosahedron" and rec["published_class"] == \
      "Icosahedron"
  assert rec["fit_loss_published_class"] == rec["fit_loss"] != 1.25e-3
  assert (fits / "barke5.npz").exists()
  cached = json.loads((tmp_path / "eval" / "experiment" / "barke6.json")
                      .read_text())
  assert cached["fit_loss"] == 1.25e-3
  text = results.read_text()
  assert "| barke5 | Icosahedron | Icosahedron" in text and "4.63e-03" in text


def test_evaluate_bad_model_is_one_line(tmp_path):
  res = _run("experiments.evaluate", f"--out={tmp_path / 'eval'}",
             f"--model={tmp_path}", "--studies=experiment",
             f"--results={tmp_path / 'r.md'}")
  assert res.returncode == 1
  errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "no config.json" in errors[0]
  assert not (tmp_path / "r.md").exists()


def test_a_batch_pads_shorter_candidate_lists():
  """Patterns of one batch may have different numbers of candidates (two
  bodies keep three, one body two): the shorter lists are padded with
  empty ones, which STEM.json leaves out."""
  def row(c):
    r = {k: np.zeros((1, 2)) for k in recon.Reconstruction._fields}
    r["history"] = np.zeros((3, 1))
    r.update(candidate_density=np.ones((1, c, 4, 4, 4), np.float32),
             candidate_loss=np.arange(c, dtype=float)[None],
             candidate_name=np.asarray([[f"s{i}" for i in range(c)]],
                                       dtype=object))
    return r
  out = recon._stack([row(2), row(3)])
  assert out.candidate_density.shape == (2, 3, 4, 4, 4)
  assert not out.candidate_density[0, 2].any()
  assert np.isnan(out.candidate_loss[0, 2]) and out.candidate_loss[1, 2] == 2
  assert list(out.candidate_name[0]) == ["s0", "s1", ""]
