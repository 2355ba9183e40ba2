"""Tests of forward fitting (msftnet.fitting, experiments.fit)."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import Geometry
from msftnet import fitting
from msftnet import solids
from msftnet.raster import rasterize
from msftnet.refine import measurement as meas

ROOT = pathlib.Path(__file__).parent.parent
SMALL = Geometry(n_voxels=32, detector_px=64)


def _theta(radius, rotvec=(0.3, -0.2, 0.5), stretch_b=0.0):
  a = np.log((radius - fitting._MIN_R) / (fitting._SPAN_R - radius
                                          + fitting._MIN_R))
  return {"a": jnp.float32(a), "rot": jnp.asarray(rotvec, jnp.float32),
          "b": jnp.float32(stretch_b), "dir": jnp.asarray([1.0, 0.0, 0.0])}


@pytest.mark.parametrize("name", ["Cube", "Icosahedron", "Decahedron"])
def test_dense_solid_matches_the_library_rasteriser(name):
  theta = _theta(0.3)
  n, d = fitting._body_planes(name)
  ours = np.asarray(fitting.solid_density(theta, n, d, False, 32))
  a, radius, _, _ = jax.device_get(fitting._linear_map(theta))
  # The same solid through msftnet.solids / msftnet.raster (one sample per
  # voxel): planes A^-T n_b, offsets d_b, normalised.
  nb, db = solids.face_planes(name)
  nr = nb @ np.linalg.inv(a)
  norm = np.linalg.norm(nr, axis=1)
  pad = solids.MAX_PLANES - len(nb)
  normals = np.concatenate([nr / norm[:, None], np.zeros((pad, 3))])
  offsets = np.concatenate([db / norm, np.ones(pad)])
  ref = np.asarray(rasterize(normals, offsets, np.zeros((3, 3)), 32,
                             supersample=1))
  np.testing.assert_allclose(ours, ref, atol=1e-4)
  assert abs(radius - 0.3) < 1e-5


def test_sphere_class_is_a_ball_of_the_radius():
  n, d = fitting._body_planes("Sphere")
  vol = np.asarray(fitting.solid_density(_theta(0.25), n, d, True, 32))
  expected = 4 / 3 * np.pi * (0.25 * 32) ** 3
  assert vol.sum() == pytest.approx(expected, rel=0.03)


def test_gradients_are_finite_and_reach_every_parameter():
  n, d = fitting._body_planes("Octahedron")
  pattern = np.asarray(meas.simulate_with_dark_level(
      jnp.asarray(fitting.solid_density(_theta(0.3), n, d, False, 32))[None],
      SMALL, jnp.asarray([-3.0])))
  valid = jnp.ones_like(pattern, bool)

  def loss(t):
    rho = fitting.solid_density(t, n, d, False, 32)[None]
    sim = meas.simulate_with_dark_level(rho, SMALL, jnp.asarray([-3.0]))
    return jnp.mean(meas.masked_mse(sim, pattern, valid))
  g = jax.jit(jax.grad(loss))(_theta(0.2, stretch_b=0.3))
  for k in ("a", "rot", "b", "dir"):
    assert np.all(np.isfinite(np.asarray(g[k]))), k
    assert float(jnp.abs(g[k]).max()) > 0, k


def test_fit_recovers_size_and_prefers_the_true_class():
  truth = solids.SolidParams("Cube", size=0.6, theta=0.5, phi=0.1, alpha=0.4)
  rho = rasterize(*solids.half_spaces(truth), 32)
  pattern = np.asarray(meas.simulate_with_dark_level(
      rho[None], SMALL, jnp.asarray([-3.0])))[0]
  config = fitting.FitConfig(starts=3, steps=40,
                             classes=("Octahedron", "Sphere", "Cube"))
  out = fitting.fit(pattern, config=config, geometry=SMALL)
  assert out.best.polyhedron == "Cube"
  true_r = 0.6 * 0.5 * SMALL.box_nm
  assert out.best.circumradius_nm == pytest.approx(true_r, rel=0.1)
  by = {f.polyhedron: f.loss for f in out.per_class}
  assert by["Cube"] < min(by["Sphere"], by["Octahedron"])
  assert out.density.shape == (32, 32, 32) and out.pattern.shape == (64, 64)


def test_fit_config_rejects_unknown_classes_and_bad_counts():
  with pytest.raises(ValueError, match="Potato"):
    fitting.FitConfig(classes=("Potato",))
  with pytest.raises(ValueError, match="keep"):
    fitting.FitConfig(keep=0)
  with pytest.raises(ValueError, match="coarse_survivors=-1"):
    fitting.FitConfig(coarse_survivors=-1)


def test_coarse_halving_continues_the_best_starts():
  # The default coarse_survivors=1: all starts for half the coarse steps,
  # the best one for the rest; its coarse loss ends at least about as low
  # as the best start's after the first half (Adam goes on from there).
  # Same programs as test_fit_recovers_size_and_prefers_the_true_class
  # (40-step scans of 3 starts and of 1 on SMALL): shared compilations.
  truth = solids.SolidParams("Cube", size=0.5, theta=0.2, phi=0.1, alpha=0.3)
  rho = rasterize(*solids.half_spaces(truth), 32)
  pattern = np.asarray(meas.simulate_with_dark_level(
      rho[None], SMALL, jnp.asarray([-3.0])))[0]
  valid = np.ones_like(pattern, bool)
  halved = fitting.FitConfig(starts=3, coarse_steps=80, steps=0)
  assert halved.coarse_survivors == 1
  theta0 = fitting._starts(halved, fitting.FIT_CLASSES.index("Cube"))
  best, loss_halved = fitting._coarse_best("Cube", theta0, pattern, valid,
                                           SMALL, halved)
  assert best["a"].shape == (1,) and np.isfinite(loss_halved)
  first_half = dataclasses.replace(halved, coarse_steps=40,
                                   coarse_survivors=0)
  loss_first = fitting._coarse_best("Cube", theta0, pattern, valid, SMALL,
                                    first_half)[1]
  assert loss_halved <= loss_first * 1.05

def test_full_problem_fit_without_coarse_stage():
  # coarse_steps=0: every start on the full problem (the former default).
  truth = solids.SolidParams("Cube", size=0.5, theta=0.2, phi=0.1, alpha=0.3)
  rho = rasterize(*solids.half_spaces(truth), 32)
  pattern = np.asarray(meas.simulate_with_dark_level(
      rho[None], SMALL, jnp.asarray([-3.0])))[0]
  cf, theta = fitting.fit_class(
      "Cube", pattern, config=fitting.FitConfig(starts=2, steps=3,
                                                coarse_steps=0),
      geometry=SMALL)
  assert np.isfinite(cf.loss) and cf.loss > 0 and np.isfinite(cf.paper_loss)
  assert theta["a"].shape == ()


@pytest.mark.launcher
def test_fit_launcher(tmp_path):
  fixture = ROOT / "tests" / "fixtures" / "experiment" / "barke5.png"
  res = subprocess.run(
      [sys.executable, "-m", "experiments.fit", f"--out={tmp_path}",
       "--experimental", "--classes=Icosahedron,Sphere", "--starts=1",
       "--steps=2",
       "--coarse_steps=0",
       str(fixture), str(tmp_path / "missing.png")],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert res.returncode == 1 and "missing.png: no such file" in res.stderr
  rec = json.loads((tmp_path / "barke5.json").read_text())
  # The record names the class with the lowest (masked) loss of those
  # fitted, and carries that class's losses.
  per = rec["per_class"]
  assert set(per) == {"Icosahedron", "Sphere"}
  assert rec["best_class"] == min(per, key=lambda c: per[c]["masked_loss"])
  assert rec["loss"] == per[rec["best_class"]]["loss"]
  assert 0 < rec["loss"] < rec["masked_loss"]
  assert np.load(tmp_path / "barke5_density.npy").shape == (64, 64, 64)
  assert (tmp_path / "barke5.png").exists()
  # An unknown class is refused before any work (the launcher prints it).
  with pytest.raises(ValueError, match="cannot be fitted"):
    fitting.FitConfig(classes=("Potato",))
