"""Tests of the refinement package (msftnet.refine: the measurement model,
the methods and their registry, the ranking and warnings) and of the
launchers' ``--refine`` parser."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import Geometry
from msftnet import losses
from msftnet import metrics
from msftnet import reconstruct as recon
from msftnet import refine
from msftnet.launch.refine_flags import parse_refine_config
from msftnet.raster import sphere_density
from msftnet.refine import measurement as meas
from msftnet.refine import trust
from msftnet.refine import voxels

from conftest import solid_volume

SMALL = Geometry(n_voxels=32, detector_px=64)
FAST = refine.RefineConfig(steps=25, start="network", shrinkwrap_every=10)
# The same step counts as the pipeline and launcher tests: their compiled
# refinement is then shared through the persistent compilation cache.
QUICK = refine.RefineConfig(steps=2, coarse_steps=2)


@pytest.fixture(scope="module")
def cube_problem():
  truth = solid_volume("Cube", 0.5, theta=0.4, phi=0.2, alpha=0.7)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(truth)[None], SMALL, jnp.asarray([-3.0])))[0]
  valid = np.ones_like(pattern, bool)
  valid[:, :20] = False                          # a detector edge is missing
  start = np.asarray(sphere_density(32, 0.2))
  return truth, pattern, valid, start


def test_registry_names_every_method_and_refuses_others():
  assert set(refine.METHODS) == {"polytope", "voxels"}
  assert refine.get("voxels") is voxels.refine_one
  with pytest.raises(ValueError, match="unknown, expected one of"):
    refine.get("splines")
  with pytest.raises(ValueError, match="polytope or voxels"):
    refine.RefineConfig(method="splines")


def test_voxel_refinement_lowers_the_loss_and_moves_towards_the_truth(
    cube_problem):
  truth, pattern, valid, start = cube_problem
  out = recon.refine(start, pattern, valid, geometry=SMALL, config=FAST)
  assert out.density.shape == (32, 32, 32) and out.pattern.shape == (64, 64)
  assert 0 <= out.density.min() and out.density.max() <= 1
  assert out.loss_after < 0.85 * out.loss_before
  assert out.history[-1] < out.history[0]
  assert out.history.shape == (25,)
  # The voxels moved, and not away from the cube (25 steps move the ball's
  # surface by about a voxel: the overlap grows little; the polytope test
  # below holds the recovery to a floor).
  assert np.abs(out.density - start).max() > 0.3
  before = metrics.aligned_iou(start, truth)
  assert metrics.aligned_iou(out.density, truth) >= before
  # The paper's protocol: mean over all pixels, zero outside the mask.
  assert out.paper_loss_after == pytest.approx(
      metrics.pattern_mse(out.pattern, pattern, valid), rel=1e-4)


def test_pixels_outside_the_mask_have_no_influence(cube_problem):
  truth, pattern, valid, start = cube_problem
  noisy = pattern.copy()
  noisy[~valid] = np.random.default_rng(0).uniform(size=(~valid).sum())
  a = recon.refine(start, pattern, valid, geometry=SMALL, config=FAST)
  b = recon.refine(start, noisy, valid, geometry=SMALL, config=FAST)
  np.testing.assert_array_equal(a.density, b.density)
  assert a.loss_after == b.loss_after
  # And the masked loss's gradient with respect to those pixels is zero.
  g = jax.grad(lambda p: losses.masked_pattern_loss(
      jnp.asarray(truth)[None], p, jnp.asarray(valid)[None], SMALL))(
          jnp.asarray(noisy)[None])
  assert float(jnp.abs(g[0][~valid]).max()) == 0.0
  assert float(jnp.abs(g[0][valid]).max()) > 0.0


def test_multi_start_keeps_the_best_start(cube_problem):
  truth, pattern, valid, _ = cube_problem
  too_big = np.asarray(sphere_density(32, 0.45))
  config = dataclasses.replace(FAST, start="auto", steps=15)
  out = recon.refine(too_big, pattern, valid, geometry=SMALL, config=config)
  alone = recon.refine(too_big, pattern, valid, geometry=SMALL,
                       config=dataclasses.replace(config, start="network"))
  assert out.start >= 1                     # a sphere start won
  assert voxels.start_label(out.start, config).startswith("sphere r=")
  # The kept start has the lowest final objective (data term + priors).
  assert out.history[-1] < alone.history[-1]
  assert out.network_loss == pytest.approx(alone.network_loss, rel=1e-5)


def test_the_dark_level_is_part_of_the_model(cube_problem):
  """The same density with another dark level is another pattern, and the
  grid search finds the level the pattern was made with."""
  truth, pattern, valid, _ = cube_problem
  rho = jnp.asarray(truth)[None]
  other = np.asarray(meas.simulate_with_dark_level(rho, SMALL,
                                                   jnp.asarray([-6.0])))[0]
  assert np.abs(other - pattern).max() > 0.1
  u, loss = meas.fit_dark_level(rho, jnp.asarray(pattern)[None],
                                jnp.asarray(valid)[None], SMALL)
  assert float(u[0]) == pytest.approx(-3.0) and float(loss[0]) < 1e-10
  u6, _ = meas.fit_dark_level(rho, jnp.asarray(other)[None],
                              jnp.asarray(valid)[None], SMALL)
  assert float(u6[0]) == pytest.approx(-6.0)


def test_polytope_refinement_recovers_a_known_solid():
  """End to end on a small grid: an octahedron's pattern, with a beam stop,
  refined from a ball far too small standing in for the network; the answer
  must overlap the truth (aligned IoU floor; 0.85 when written) much better
  than the ball, and be the lowest-objective plausible candidate of all
  refined."""
  truth = solid_volume("Octahedron", 0.6, theta=0.7, phi=0.3, alpha=1.1)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(truth)[None], SMALL, jnp.asarray([-3.0])))[0]
  valid = np.ones_like(pattern, bool)
  valid[28:36, 28:36] = False                       # a beam stop
  ball = np.asarray(sphere_density(32, 0.1))
  config = refine.RefineConfig(steps=60, coarse_steps=60, planes=24)
  _, net_masked, _, _ = meas.pattern_losses(ball, pattern, valid, SMALL)
  res = refine.get("polytope")(ball, pattern, valid, SMALL, config,
                               net_masked)
  start_iou = metrics.aligned_iou(ball, truth)
  got = metrics.aligned_iou(res.density[0], truth)
  assert got >= 0.7 and got > start_iou + 0.4, (start_iou, got)
  assert res.masked < net_masked
  # The winner: the lowest objective among the plausible candidates.
  masked = [meas.pattern_losses(d, pattern, valid, SMALL)[1]
            for d in res.density]
  plausible = ~trust.is_empty(res.density, len(res.loss)) & (
      np.asarray(masked) <= trust.IMPLAUSIBLE_LOSS_FACTOR * min(masked))
  assert plausible[0] and res.loss[0] == res.loss[plausible].min()
  assert res.masked == pytest.approx(masked[0], rel=1e-6)


def test_refine_settings_from_text():
  c = parse_refine_config(
      "keep=3, planes=24,radius_bands=((0.04, 0.1), (0.1, 0.45))")
  assert (c.keep, c.planes, c.radius_bands) == (3, 24, ((0.04, 0.1),
                                                       (0.1, 0.45)))
  assert c.steps == refine.RefineConfig().steps
  assert parse_refine_config("") == refine.RefineConfig()
  base = refine.RefineConfig(method="voxels")
  assert parse_refine_config("steps=5", base).method == "voxels"
  assert parse_refine_config("profile=ramp").profile == "ramp"
  assert parse_refine_config("profile='ramp'").profile == "ramp"
  for bad, expect in (("kep=3", "expected FIELD=VALUE"),
                      ("profile=smooth", "profile must be one of"),
                      ("profile=ramp box", "not a Python literal"),
                      ("keep", "expected FIELD=VALUE"),
                      ("keep=three", "not a Python literal"),
                      ("planes=2", "planes must be >= 4"),
                      ("planes='many'", "expected type int")):
    with pytest.raises(ValueError, match=expect):
      parse_refine_config(bad)


def test_an_empty_candidate_never_wins():
  """A refined body smaller than a voxel (no voxel above 0.5), or far worse
  than the best in the reported loss, ranks after every other candidate,
  whatever its objective (seen: a vanishing sphere behind a beam stop,
  aligned IoU 0 against the truth)."""
  dens = np.zeros((3, 8, 8, 8), np.float32)
  dens[0, 3:5, 3:5, 3:5] = 0.36          # sub-voxel: partial volume only
  dens[1, 2:6, 2:6, 2:6] = 1.0
  dens[2, 3:6, 3:6, 3:6] = 1.0
  order = trust.rank_candidates([1e-4, 3e-3, 2e-3], dens)
  assert list(order) == [2, 1, 0]
  assert list(trust.rank_candidates([3e-3, 1e-3, 2e-3], dens[[1, 2, 1]])) == [
      1, 2, 0]
  # Far worse than the best in the reported (masked) loss: implausible too.
  full = dens[[1, 2, 1]]
  assert list(trust.rank_candidates([1e-3, 2e-3, 3e-3], full,
                                    [0.09, 0.004, 0.003])) == [1, 2, 0]
  assert list(trust.rank_candidates([1e-3, 2e-3, 3e-3], full,
                                    [0.008, 0.004, 0.003])) == [0, 1, 2]


def test_results_that_should_not_be_trusted_are_flagged():
  full = np.zeros((8, 8, 8), np.float32)
  full[2:6, 2:6, 2:6] = 1.0
  assert trust.result_warning(full, 2e-3, 1e-3) is None
  assert trust.result_warning(full, 3e-3, 1e-3) is None       # the bound
  assert "empty" in trust.result_warning(full * 0.4, 1e-3, 1e-3)
  assert "4.0 times worse" in trust.result_warning(full, 4e-3, 1e-3)


def test_a_refinement_far_worse_than_the_network_tries_more_starts():
  """When every kept candidate ends far worse than the network's prediction
  (forced here with a network loss of zero), the next plausible coarse
  candidates are refined as well and all come back ranked. On the paper's
  grids with QUICK's steps: the compiled refinement of
  test_reconstruct_batch_and_single_agree[polytope] is reused."""
  g = Geometry()
  truth = solid_volume("Cube", 0.5, n=64, theta=0.4, phi=0.2, alpha=0.7)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(truth)[None], g, jnp.asarray([-3.0])))[0]
  valid = np.ones_like(pattern, bool)
  valid[60:68, 60:68] = False                      # a beam stop
  method = refine.get("polytope")
  normal = method(truth, pattern, valid, g, QUICK, network_masked=1.0)
  forced = method(truth, pattern, valid, g, QUICK, network_masked=0.0)
  assert len(normal.names) == QUICK.keep == 2
  assert len(forced.names) == 4 and len(set(forced.names)) == 4
  assert set(normal.names) < set(forced.names)
  masked = [meas.pattern_losses(d, pattern, valid, g)[1]
            for d in forced.density]
  order = trust.rank_candidates(forced.loss, forced.density, masked)
  assert list(order) == [0, 1, 2, 3]


# ------------------------------------------------------------ trust signals
def test_the_fringes_give_a_balls_size_without_a_fit():
  for radius in (0.12, 0.25):
    ball = np.asarray(sphere_density(32, radius))
    pattern = np.asarray(meas.simulate_with_dark_level(
        jnp.asarray(ball)[None], SMALL, jnp.asarray([-4.0])))[0]
    valid = np.ones_like(pattern, bool)
    valid[28:36, 28:36] = False                     # a beam stop
    found, r = trust.fringe_radius(pattern, valid, SMALL)
    assert found == pytest.approx(radius, rel=0.08) and r > 0.9
    assert trust.equivalent_radius(ball) == pytest.approx(radius, rel=0.05)
  noise = np.random.default_rng(3).uniform(size=(64, 64))
  assert trust.fringe_radius(noise, np.ones((64, 64), bool), SMALL)[1] < 0.7


def test_noise_fraction_sees_pixel_noise_not_fringes(cube_problem):
  _, pattern, valid, _ = cube_problem
  clean = trust.noise_fraction(pattern, valid)
  assert clean < 0.02
  sigma = 0.05
  noisy = pattern + np.random.default_rng(4).normal(0, sigma, pattern.shape)
  expect = sigma**2 / noisy[valid].var()
  assert trust.noise_fraction(noisy, valid) == pytest.approx(expect, rel=0.3)


def test_touching_the_box_and_ranking_it_last():
  ball = np.asarray(sphere_density(16, 0.3))
  slab = np.zeros((16, 16, 16), np.float32)
  slab[:, 6:10, 6:10] = 1.0                        # from face to face
  assert not trust.touches_box(ball) and trust.touches_box(slab)
  dens = np.stack([slab, ball])
  assert list(trust.rank_candidates([1e-3, 2e-3], dens)) == [0, 1]
  assert list(trust.rank_candidates([1e-3, 2e-3], dens, box_last=True)) == [
      1, 0]


def _signals(**changes):
  sig = {"fringe_radius_box": 0.2, "fringe_correlation": 0.8,
         "equivalent_radius_box": 0.2, "size_log_ratio": 0.0,
         "unexplained_fraction": 0.03, "noise_fraction": 0.02,
         "dark_level_log10": -4.0, "touches_box": False, "empty": False,
         "network_loss_ratio": 0.3, "valid_fraction": 0.9,
         "candidate_agreement": 0.9}
  sig.update(changes)
  return sig


@pytest.mark.parametrize("bad, reason", [
    (dict(candidate_agreement=0.2), "candidates disagree"),
    (dict(size_log_ratio=-1.0, equivalent_radius_box=0.07),
     "disagrees with the fringe spacing"),
    (dict(touches_box=True), "touches the box"),
    (dict(unexplained_fraction=0.4), "unexplained"),
    (dict(network_loss_ratio=5.0), "worse than the network"),
])
def test_each_bad_signal_lowers_the_confidence_and_says_why(bad, reason):
  good = _signals()
  assert trust.reasons(good) == []
  worse = _signals(**bad)
  assert trust.confidence(worse) < trust.confidence(good)
  assert any(reason in r for r in trust.reasons(worse))
  assert trust.confidence(_signals(empty=True)) == 0.0
  assert trust.confidence(good) > trust.LOW_CONFIDENCE


def test_an_answer_that_explains_nothing_has_no_confidence():
  """Pure noise (its pixel noise as large as its variance) leaves the
  excess over the noise near 0, which the logistic model reads as a good
  fit: the rule sets the confidence to 0 and says why."""
  noise = _signals(unexplained_fraction=0.99, noise_fraction=0.99)
  assert trust.explains_nothing(noise)
  assert trust.confidence(noise) == 0.0
  assert any("explains almost nothing" in r for r in trust.reasons(noise))
  below = _signals(unexplained_fraction=trust.NOTHING_EXPLAINED - 0.01,
                   noise_fraction=trust.NOTHING_EXPLAINED - 0.01)
  assert not trust.explains_nothing(below) and trust.confidence(below) > 0


def test_two_centres_with_different_shapes_cap_the_confidence():
  """A fit that looks good but whose next-best centre explains the pattern
  almost as well with another shape is ambiguous: its confidence drops
  below the warning threshold; a clear margin or the same shape at both
  centres leaves it alone, as does a result refined at one centre."""
  good = _signals()
  assert trust.confidence(good) > trust.LOW_CONFIDENCE
  ambiguous = dict(good, centre_margin=trust.CENTRE_MARGIN / 2,
                   centre_agreement=0.3)
  assert trust.ambiguous_centre(ambiguous)
  assert trust.confidence(ambiguous) == trust.AMBIGUOUS_CENTRE_CONFIDENCE
  assert trust.AMBIGUOUS_CENTRE_CONFIDENCE < trust.LOW_CONFIDENCE
  # The warning names the cause, not "no single signal stands out".
  warning = trust.warning(ambiguous, trust.confidence(ambiguous))
  assert "another centre's fit" in warning and "0.30" in warning
  for clear in (dict(ambiguous, centre_margin=2 * trust.CENTRE_MARGIN),
                dict(ambiguous, centre_agreement=0.9), good):
    assert not trust.ambiguous_centre(clear)
    assert trust.confidence(clear) == trust.confidence(good)
  # A cap, not a floor: a result already below it keeps its confidence.
  bad = dict(ambiguous, touches_box=True, candidate_agreement=0.1,
             unexplained_fraction=0.4, network_loss_ratio=5.0)
  assert trust.confidence(bad) < trust.AMBIGUOUS_CENTRE_CONFIDENCE


def test_the_confidence_says_where_it_was_not_calibrated():
  """Only the polytope refinement of the log pattern is calibrated; the
  network alone, the voxels and the Poisson objective say so."""
  assert trust.calibration_note("polytope", 50) is None
  assert "network alone" in trust.calibration_note("polytope", 0)
  assert "voxels refinement" in trust.calibration_note("voxels", 50)
  assert "not the poisson one" in trust.calibration_note("polytope", 50,
                                                         "poisson")


def test_a_body_deeper_than_any_solid_caps_the_confidence():
  """A well-fitted body far deeper along the beam than the generator's
  solids is capped below the warning threshold, with its reason; a body
  at the generator's depths, or signals without a depth, are left alone."""
  good = _signals(depth_log_ratio=0.3)
  assert trust.confidence(good) > trust.LOW_CONFIDENCE
  deep = dict(good, depth_log_ratio=trust.DEEP_BODY + 0.2)
  assert trust.deep_body(deep) and not trust.deep_body(good)
  assert trust.confidence(deep) == trust.DEEP_BODY_CONFIDENCE
  assert trust.DEEP_BODY_CONFIDENCE < trust.LOW_CONFIDENCE
  assert "deeper along the beam" in trust.warning(deep,
                                                  trust.confidence(deep))
  assert trust.confidence(_signals()) == trust.confidence(good)
  assert not trust.deep_body(_signals())


def test_a_low_confidence_sets_the_warning_with_its_reasons():
  import types
  from msftnet import runs
  full = np.zeros((1, 8, 8, 8), np.float32)
  full[0, 2:6, 2:6, 2:6] = 1.0
  signals = np.empty(1, dtype=object)
  signals[0] = _signals(touches_box=True)
  out = types.SimpleNamespace(
      density=full, loss_after=np.asarray([1e-3]),
      network_loss=np.asarray([1e-3]), confidence=np.asarray([0.2]),
      signals=signals)
  warning = runs.warning_of(out, 0)
  assert "low confidence (0.20)" in warning and "touches the box" in warning
  out.confidence = np.asarray([0.9])
  assert runs.warning_of(out, 0) is None
  # Structured residuals: flagged whatever the confidence.
  signals[0] = _signals(unexplained_fraction=0.2, noise_fraction=0.01)
  assert "structured residuals (20%" in runs.warning_of(out, 0)
  # A tenth of the variance or more, over 3x the noise: flagged too.
  signals[0] = _signals(unexplained_fraction=0.2, noise_fraction=0.05)
  assert "structured residuals (20%" in runs.warning_of(out, 0)
  signals[0] = _signals(unexplained_fraction=0.2, noise_fraction=0.08)
  assert runs.warning_of(out, 0) is None             # noise explains it
  signals[0] = _signals(unexplained_fraction=0.08, noise_fraction=0.02)
  assert runs.warning_of(out, 0) is None       # under a tenth, under 7x


def test_the_centre_is_fitted_below_a_pixel():
  """A pattern whose q = 0 lies one pixel off in each axis after the integer
  search: with ``fit_centre`` the refinement finds the offset and a better
  shape than without."""
  truth = solid_volume("Cube", 0.5, theta=0.4, phi=0.2, alpha=0.7)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(truth)[None], SMALL, jnp.asarray([-3.0])))[0]
  from msftnet import centre
  moved, valid = centre.shift_pattern(pattern, None, (1, -1))
  ball = np.asarray(sphere_density(32, 0.15))
  _, net_masked, _, _ = meas.pattern_losses(ball, moved, valid, SMALL)
  got = {}
  for fit in (False, True):
    config = refine.RefineConfig(steps=60, coarse_steps=60, planes=24,
                                 fit_centre=fit)
    got[fit] = refine.get("polytope")(ball, moved, valid, SMALL, config,
                                      net_masked)
  np.testing.assert_allclose(got[True].centre_offset, (-1.0, 1.0), atol=0.2)
  assert got[False].centre_offset == (0.0, 0.0)
  assert (metrics.aligned_iou(got[True].density[0], truth)
          > metrics.aligned_iou(got[False].density[0], truth))


def test_mask_erosion_fits_inside_and_scores_on_every_valid_pixel():
  truth = solid_volume("Octahedron", 0.6, theta=0.7, phi=0.3, alpha=1.1)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(truth)[None], SMALL, jnp.asarray([-3.0])))[0]
  valid = np.ones_like(pattern, bool)
  valid[28:36, 28:36] = False
  ball = np.asarray(sphere_density(32, 0.1))
  config = refine.RefineConfig(steps=60, coarse_steps=60, planes=24,
                               mask_erosion=2)
  res = refine.get("polytope")(ball, pattern, valid, SMALL, config, 1.0)
  # Scored on the full mask (what the pipeline reports), fitted inside it.
  assert res.masked == pytest.approx(
      meas.pattern_losses(res.density[0], pattern, valid, SMALL)[1],
      rel=1e-6)
  assert metrics.aligned_iou(res.density[0], truth) >= 0.7


def test_signals_are_strict_json_even_without_fringes():
  import json
  rng = np.random.default_rng(5)
  pattern = rng.uniform(size=(64, 64)).astype(np.float32)
  valid = np.zeros((64, 64), bool)
  valid[:6, :6] = True                      # a corner: no radial profile
  ball = np.asarray(sphere_density(32, 0.2))
  sig = trust.signals(ball, pattern, valid, SMALL, objective=0.01,
                      dark_level=-3.0, masked=0.02, network_masked=0.02)
  assert sig["fringe_radius_box"] is None and sig["size_log_ratio"] == 0.0
  json.dumps(sig, allow_nan=False)
  assert 0.0 <= trust.confidence(sig) <= 1.0
  # The size check it skips is said.
  assert any("size is unchecked" in r for r in trust.reasons(sig))


def test_the_shape_networks_radius_narrows_the_starts(cube_problem):
  from msftnet.refine import polytope as refine_polytope
  _, pattern, valid, start = cube_problem
  every = refine_polytope.polytope_starts(start, pattern, valid, SMALL,
                                          refine.RefineConfig())[2]
  config = refine.RefineConfig(shape_band=1.3)
  hinted = refine_polytope.polytope_starts(start, pattern, valid, SMALL,
                                           config, radius=0.2)[2]
  assert len(every) == 10 and len(hinted) == 4 and hinted[0] == "network"
  radii = [float(n.split("r=")[1].split()[0]) for n in hinted[1:]]
  assert all(0.2 / 1.3 <= r < 0.2 * 1.3 for r in radii)
  # No scanned radius near the hint, or a best sphere far from it (the
  # shape network wrong about the size): the usual bands.
  for wrong in (0.005, 0.42):
    assert len(refine_polytope.polytope_starts(start, pattern, valid, SMALL,
                                               config, radius=wrong)[2]) == 10
  with pytest.raises(ValueError, match="shape_band"):
    refine.RefineConfig(shape_band=0.9)


def test_the_dark_level_stays_below_its_bound(cube_problem):
  """``max_dark`` bounds the fitted dark level everywhere it is fitted: the
  grid searches, the polytope and voxel refinements, and the losses they
  report (which are then those of the bounded model)."""
  truth, pattern, valid, start = cube_problem          # made at u = -3
  rho = jnp.asarray(truth)[None]
  assert float(meas.dark_grid(-2.0).max()) == -2.0
  assert float(meas.dark_grid(-9.0)[0]) == meas.DARK_GRID[0]
  u, loss = meas.fit_dark_level(rho, jnp.asarray(pattern)[None],
                                jnp.asarray(valid)[None], SMALL, -4.0)
  assert float(u[0]) == -4.0 and float(loss[0]) > 1e-6  # the bound binds
  u_aff, _ = meas.affine_dark_search(
      msftnet_intensity(rho), jnp.asarray(pattern)[None],
      jnp.asarray(valid)[None], -4.0)
  assert float(u_aff[0]) <= -4.0
  ball = np.asarray(sphere_density(32, 0.2))
  config = refine.RefineConfig(steps=10, coarse_steps=10, planes=24,
                               max_dark=-4.0)
  res = refine.get("polytope")(ball, pattern, valid, SMALL, config, 1.0)
  assert res.dark_level <= -4.0
  assert res.masked == pytest.approx(
      meas.pattern_losses(res.density[0], pattern, valid, SMALL, -4.0)[1],
      rel=1e-6)
  vox = recon.refine(start, pattern, valid, geometry=SMALL,
                     config=dataclasses.replace(FAST, max_dark=-4.0))
  assert vox.dark_level <= -4.0
  with pytest.raises(ValueError, match="max_dark"):
    refine.RefineConfig(max_dark=1.0)


def msftnet_intensity(rho):
  from msftnet import intensity
  return intensity(rho, SMALL)


def _octahedron_counts(photons=1e4, seed=0):
  """Raw counts of an octahedron's pattern on SMALL (a few dark counts),
  read as a measurement would be: ``(truth, counts, pattern, valid, info)``."""
  from msftnet import measured
  truth = solid_volume("Octahedron", 0.6, theta=0.7, phi=0.3, alpha=1.1)
  inten = np.asarray(msftnet_intensity(jnp.asarray(truth)[None]))[0]
  counts = np.random.default_rng(seed).poisson(
      inten / inten.max() * photons + 0.05).astype(np.int32)
  valid = np.ones_like(counts, bool)
  valid[28:36, 28:36] = False                       # a beam stop
  pattern, info = measured.prepare_pattern(counts, valid, input_scale="counts")
  return truth, counts, pattern, valid, info


def test_the_counts_come_back_from_a_count_patterns_info():
  """A pattern read as counts keeps what inverts its log: the counts inside
  the valid pixels to float32 rounding; a log pattern keeps nothing."""
  from msftnet import measured
  _, counts, pattern, valid, info = _octahedron_counts()
  photons = measured.photons_of(info)
  assert photons is not None and photons[2] == measured.COUNTS_DARK
  back = np.asarray(meas.counts_from_pattern(jnp.asarray(pattern), photons))
  np.testing.assert_allclose(back[valid], counts[valid], rtol=2e-4, atol=0.05)
  _, log_info = measured.prepare_pattern(pattern, valid, input_scale="log")
  assert measured.photons_of(log_info) is None


def test_the_poisson_deviance_is_scale_free_and_lowest_at_the_truth():
  """The deviance fits the scale (any multiple of the model gives the same
  value), is 0 when the counts are the model, about 1 per pixel under shot
  noise at high counts, and higher for a wrong body."""
  rng = np.random.default_rng(1)
  mu = jnp.asarray(rng.uniform(200.0, 5000.0, (2, 16, 16)), jnp.float32)
  valid = jnp.ones((16, 16), bool).at[:4].set(False)
  counts = jnp.asarray(rng.poisson(np.asarray(mu)), jnp.float32)
  d = meas.poisson_deviance(mu, counts, valid)
  np.testing.assert_allclose(meas.poisson_deviance(7.0 * mu, counts, valid), d,
                             rtol=1e-4)
  assert np.all(np.abs(np.asarray(d) - 1.0) < 0.35), d
  np.testing.assert_allclose(meas.poisson_deviance(mu, 3.0 * mu, valid), 0.0,
                             atol=1e-3)
  # Pixels outside the mask do not count.
  wild = counts.at[:, :4].set(1e6)
  np.testing.assert_allclose(meas.poisson_deviance(mu, wild, valid), d,
                             rtol=1e-6)
  # The octahedron's counts: its own intensity beats a ball's.
  truth, counts8, pattern, valid8, info = _octahedron_counts()
  ball = sphere_density(32, 0.25)
  inten = msftnet_intensity(jnp.stack([jnp.asarray(truth), ball]))
  mu8 = inten + 0.05 / 1e4 * jnp.max(inten, axis=(-2, -1), keepdims=True)
  dev = np.asarray(meas.poisson_deviance(
      mu8, jnp.asarray(counts8, jnp.float32), valid8))
  assert dev[0] < 2.0 < dev[1], dev


def test_the_poisson_objective_recovers_a_solid_from_counts():
  """The polytope refinement with ``objective="poisson"`` fits the counts
  behind a raw-count pattern (the octahedron of the log-pattern test, 1e4
  photons at the peak): the answer overlaps the truth (aligned IoU floor;
  0.77 when written; far below the floor without the background bound
  of ``count_dark_bound``, which the fit then raised towards the peak) far better than the small ball it starts from, and its
  candidates' objective is the deviance. Without the counts it refuses in
  one sentence."""
  from msftnet import measured
  truth, _, pattern, valid, info = _octahedron_counts()
  ball = np.asarray(sphere_density(32, 0.1))
  config = refine.RefineConfig(steps=60, coarse_steps=60, planes=24,
                               objective="poisson")
  _, net_masked, _, _ = meas.pattern_losses(ball, pattern, valid, SMALL)
  photons = measured.photons_of(info)
  res = refine.get("polytope")(ball, pattern, valid, SMALL, config,
                               net_masked, photons=photons)
  got = metrics.aligned_iou(res.density[0], truth)
  assert got >= 0.7 and got > metrics.aligned_iou(ball, truth) + 0.4, got
  # The candidates' objective is the deviance: far below the start's at
  # its best dark level within the counts' bound.
  counts = meas.counts_from_pattern(jnp.asarray(pattern), photons)
  cap = meas.count_dark_bound(counts, valid)
  inten = msftnet_intensity(jnp.asarray(ball)[None])
  start = min(float(meas.poisson_deviance(
      inten + jnp.max(inten) * 10.0 ** u, counts, valid)[0])
              for u in meas.DARK_GRID if u <= cap)
  assert res.loss[0] < start / 3, (res.loss, start)
  # The dark level is refined below the counts' bound (it starts under
  # it: above, the clip would hold it still).
  from msftnet.refine import polytope as poly
  dirs = np.asarray(__import__("msftnet").polytope.fibonacci_directions(24))
  normals = jnp.asarray(np.broadcast_to(dirs, (2, 24, 3)))
  offsets = jnp.full((2, 24), 0.2, jnp.float32)
  kw = dict(geometry=SMALL, photons=jnp.asarray(photons, jnp.float32),
            dark_cap=jnp.float32(cap))
  p0, _, _ = poly.refine_polytopes(normals, offsets, jnp.asarray(pattern),
                                   jnp.asarray(valid), steps=0, **kw)
  p1, _, _ = poly.refine_polytopes(normals, offsets, jnp.asarray(pattern),
                                   jnp.asarray(valid), steps=20, **kw)
  assert np.all(np.asarray(p1["u"]) <= cap)
  assert np.all(np.abs(np.asarray(p1["u"]) - np.asarray(p0["u"])) > 1e-3)
  with pytest.raises(ValueError, match="photon counts"):
    refine.get("polytope")(ball, pattern, valid, SMALL, config, net_masked)
  with pytest.raises(ValueError, match="objective must be one of"):
    refine.RefineConfig(objective="gauss")
  with pytest.raises(ValueError, match="polytope refinement"):
    refine.RefineConfig(method="voxels", objective="poisson")


# ------------------------------------------------------ two touching bodies
def _balls(centres, r, n=32):
  """Touching or separate balls of radius ``r`` (box units) ``[N, N, N]``."""
  c = (np.arange(n) - (n - 1) / 2) / n
  x = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)
  return np.max([np.clip(0.5 - (np.linalg.norm(x - np.asarray(p), axis=-1)
                                - r) * n, 0.0, 1.0) for p in centres],
                axis=0).astype(np.float32)


@pytest.fixture(scope="module")
def dimer_problem():
  half = np.asarray((0.05, 0.09, 0.04))            # partly along the beam
  truth = _balls([half, -half], 0.11)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(truth)[None], SMALL, jnp.asarray([-3.0])))[0]
  valid = np.ones_like(pattern, bool)
  valid[28:36, 28:36] = False                       # a beam stop
  return truth, pattern, valid


def test_a_union_of_bodies_is_empty_only_where_every_body_is():
  from msftnet import polytope as convex
  dirs = convex.fibonacci_directions(24)
  shift = dirs @ np.asarray([0.0, 0.15, 0.0])
  ball = convex.ellipsoid_offsets(dirs, 0.1)
  normals = np.stack([dirs, dirs])
  offsets = np.stack([ball + shift, ball - shift])
  union = np.asarray(convex.bodies_density(normals, offsets, 32))
  each = np.asarray(convex.polytope_density(normals, offsets, 32))
  # Apart, the union is the sum of the bodies; the same body twice is
  # itself inside and outside, and between it and twice it at its faces.
  np.testing.assert_allclose(union, each.sum(0), atol=1e-6)
  twice = np.asarray(convex.bodies_density(normals, np.stack([ball, ball]),
                                           32))
  one = np.asarray(convex.polytope_density(dirs, ball, 32))
  assert np.all(twice >= one - 1e-6) and np.all(twice <= 2 * one + 1e-6)
  assert np.array_equal(twice[one == 1.0], one[one == 1.0])
  # Each body's planes get a gradient.
  g = jax.grad(lambda h: jnp.sum(convex.bodies_density(
      normals, h, 32) * jnp.asarray(union)))(jnp.asarray(offsets))
  assert np.all(np.abs(np.asarray(g)).sum(-1) > 0)


def test_a_body_can_be_circumscribed_where_it_lies():
  from msftnet import polytope as convex
  dirs = convex.fibonacci_directions(48)
  vol = _balls([(0.0, 0.1, -0.05)], 0.1)
  pts = np.argwhere(vol > 0.5)
  c = (pts.mean(0) - 15.5) / 32
  about_centroid = convex.support_offsets(vol, dirs)
  in_place = convex.support_offsets(vol, dirs, centred=False)
  np.testing.assert_allclose(in_place, about_centroid + dirs @ c, atol=1e-5)
  hull = np.asarray(convex.polytope_density(dirs, in_place, 32))
  assert np.all(hull[vol > 0.5] > 0.5)                 # it circumscribes
  assert metrics.iou(hull, vol) > 0.5
  assert metrics.iou(np.asarray(convex.polytope_density(
      dirs, about_centroid, 32)), vol) < 0.3       # moved to the centre


@pytest.mark.parametrize("half, dark", [((0.0, 0.12, 0.0), -3.0),
                                        ((0.06, 0.08, 0.06), -2.0),
                                        ((0.0, 0.085, -0.085), -5.0)])
def test_the_autocorrelation_reads_a_dimers_separation_across_the_beam(
    half, dark):
  """In box units, at any dark level (the pattern's decades given), also
  behind a beam stop filled with the truth's own pattern."""
  half = np.asarray(half)
  vol = _balls([half, -half], 0.11)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(vol)[None], SMALL, jnp.asarray([dark])))[0]
  valid = np.ones_like(pattern, bool)
  across = 2 * half[1:]                                # box units
  stop = valid.copy()
  stop[28:36, 28:36] = False
  for v, fill in ((valid, None), (stop, pattern)):
    direction, d, r = refine.polytope.separation_across_beam(
        pattern, v, SMALL, fill=fill, decades=-dark)
    assert abs(direction @ across) / np.linalg.norm(across) > 0.98
    assert d == pytest.approx(np.linalg.norm(across), rel=0.1)
    assert r == pytest.approx(0.11, rel=0.3)
  one = _balls([(0.0, 0.0, 0.0)], 0.15)
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(one)[None], SMALL, jnp.asarray([-3.0])))[0]
  assert refine.polytope.separation_across_beam(
      pattern, valid, SMALL, decades=3.0)[1] < 0.05


def test_two_bodies_explain_a_dimer_that_one_convex_body_cannot(
    dimer_problem):
  """Two balls, partly along the beam, behind a beam stop: refined as one
  body, then as two started from it and from the pattern's separation; the
  two bodies must explain the pattern several times better and overlap the
  truth better (figures when written: masked loss 0.0116 -> 0.0029,
  aligned IoU 0.43 -> 0.50)."""
  truth, pattern, valid = dimer_problem
  start = np.asarray(sphere_density(32, 0.1))
  config = refine.RefineConfig(steps=60, coarse_steps=60, planes=24)
  _, net_masked, _, _ = meas.pattern_losses(start, pattern, valid, SMALL)
  one = refine.get("polytope")(start, pattern, valid, SMALL, config,
                               net_masked)
  two = refine.polytope.refine_two_bodies(one.density, pattern, valid, SMALL,
                                          config, net_masked)
  assert two.masked < 0.5 * one.masked, (one.masked, two.masked)
  assert (metrics.aligned_iou(two.density[0], truth)
          > metrics.aligned_iou(one.density[0], truth) + 0.03)
  assert two.density.shape[1:] == (32, 32, 32) and len(two.names) >= 2
  # The winner's bodies, each on its own: their union is the answer.
  assert one.bodies is None and two.bodies.shape == (2, 32, 32, 32)
  np.testing.assert_allclose(1.0 - np.prod(1.0 - two.bodies, axis=0),
                             two.density[0], atol=1e-5)
  with pytest.raises(ValueError, match="recentre"):
    refine.polytope.refine_polytopes(
        np.zeros((1, 2, 8, 3)) + 1.0, np.ones((1, 2, 8)) * 0.1, pattern,
        valid, geometry=SMALL, steps=1, recentre=True)


def test_two_bodies_replace_one_only_where_they_explain_clearly_more():
  one = _signals(unexplained_fraction=0.20, noise_fraction=0.05)
  better = _signals(unexplained_fraction=0.17, noise_fraction=0.05)
  marginal = _signals(unexplained_fraction=0.19, noise_fraction=0.05)
  assert trust.two_bodies_better(one, better)
  assert not trust.two_bodies_better(one, marginal)
  assert trust.two_bodies_better(one, marginal, gain=0.96)
  assert not trust.two_bodies_better(one, dict(better, empty=True))
  # At the noise floor there is nothing left to explain.
  assert not trust.two_bodies_better(
      _signals(unexplained_fraction=0.05, noise_fraction=0.05), better)
  # The voxel refinement represents any shape: recorded as off there.
  assert refine.RefineConfig().two_bodies
  assert not refine.RefineConfig(method="voxels", two_bodies=True).two_bodies


def test_two_bodies_are_tried_where_structure_is_left_to_explain():
  doubtful, sure = 0.3, 0.9
  structured = _signals(unexplained_fraction=0.2, noise_fraction=0.01)
  assert trust.two_bodies_worth_trying(structured, doubtful)
  assert trust.two_bodies_worth_trying(structured, sure)   # residuals
  assert not trust.two_bodies_worth_trying(
      _signals(unexplained_fraction=0.03, noise_fraction=0.01), sure)
  # A noisy pattern's fit within twice its noise: nothing a second body
  # could explain, however doubtful.
  assert not trust.two_bodies_worth_trying(
      _signals(unexplained_fraction=0.4, noise_fraction=0.35), doubtful)
  assert not trust.two_bodies_worth_trying(
      _signals(unexplained_fraction=0.03, noise_fraction=0.01), doubtful,
      below=0.2)
  assert trust.two_bodies_worth_trying(
      _signals(unexplained_fraction=0.03, noise_fraction=0.01), doubtful)


def test_the_sphere_scan_behind_a_beam_stop_over_the_centre_reads_the_rest():
  """Where almost no pixel of the coarse problem's central crop is valid,
  the sphere scan fits the full pattern's valid pixels (formerly it took
  the crop's masked zeros for data): a ball's radius is still found."""
  ball = np.asarray(sphere_density(32, 0.2))
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(ball)[None], SMALL, jnp.asarray([-4.0])))[0]
  m = SMALL.detector_px
  valid = np.ones((m, m), bool)
  o = m // 4
  valid[o:o + m // 2, o:o + m // 2] = False          # the whole crop
  pattern = np.where(valid, pattern, 0.0).astype(np.float32)
  scan = refine.polytope.scan_spheres(pattern, valid, SMALL, 0.0)
  best = refine.polytope._SCAN_RADII[int(np.argmin(scan))]
  assert abs(np.log(best / 0.2)) < np.log(1.15), best
