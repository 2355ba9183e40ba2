"""Tests of the training and refinement losses (msftnet.losses)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import Geometry
from msftnet import losses
from msftnet import simulate_pattern


def test_binary_bce_iou_on_known_cases():
  half = jnp.full((1, 4, 4, 4), 0.5)
  assert float(losses.binary_loss(half)) == pytest.approx(0.0625)
  assert float(losses.binary_loss(jnp.round(half + 0.1))) == 0.0
  t = jnp.zeros((1, 4, 4, 4)).at[0, 0].set(1.0)
  assert float(losses.bce_loss(half, t)) == pytest.approx(np.log(2), rel=1e-5)
  assert float(losses.bce_loss(t, t)) < 1e-5
  p = jnp.zeros((1, 4, 4, 4)).at[0, :2].set(1.0)    # 32 voxels vs 16 voxels
  assert float(losses.iou(p, t)[0]) == pytest.approx(0.5)
  assert float(losses.iou(t, t)[0]) == 1.0


def test_scatter_and_physics_loss():
  g = Geometry(n_voxels=16, box_nm=80.0, detector_px=32)
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.random((2, 16, 16, 16)), jnp.float32)
  b = jnp.asarray(rng.random((2, 16, 16, 16)), jnp.float32)
  assert float(losses.scatter_loss(a, g, target=a)) < 1e-12
  want = np.mean((np.asarray(simulate_pattern(a, g)) -
                  np.asarray(simulate_pattern(b, g))) ** 2)
  got = losses.scatter_loss(a, g, target_pattern=simulate_pattern(b, g))
  assert float(got) == pytest.approx(want, rel=1e-5)
  assert float(losses.physics_loss(a, g, target=b)) == pytest.approx(
      want + 0.1 * float(losses.binary_loss(a)), rel=1e-5)
  # Channel-last predictions [B, N, N, N, 1] are accepted.
  assert float(losses.scatter_loss(a[..., None], g, target=b)) == pytest.approx(
      want, rel=1e-5)
  with pytest.raises(ValueError, match="needs target or target_pattern"):
    losses.scatter_loss(a, g)


def test_masked_loss_ignores_invalid_pixels():
  g = Geometry(n_voxels=16, box_nm=80.0, detector_px=32)
  rng = np.random.default_rng(2)
  pred = jnp.asarray(rng.random((1, 16, 16, 16)), jnp.float32)
  pattern = jnp.asarray(rng.random((1, 32, 32)), jnp.float32)
  valid = jnp.asarray(rng.random((1, 32, 32)) > 0.5)
  base = losses.masked_pattern_loss(pred, pattern, valid, g)
  changed = jnp.where(valid, pattern, 1.0 - pattern)
  assert float(losses.masked_pattern_loss(pred, changed, valid, g)) == float(base)
  sim = simulate_pattern(pred, g)
  want = np.sum(np.asarray(valid) * (np.asarray(sim) - np.asarray(pattern))**2
                ) / np.sum(np.asarray(valid))
  assert float(base) == pytest.approx(want, rel=1e-5)
  # No gradient flows from invalid pixels.
  grad = jax.grad(lambda p: losses.masked_pattern_loss(pred, p, valid, g))(
      pattern)
  assert np.all(np.asarray(grad)[~np.asarray(valid)] == 0)


def test_the_loss_constant_keeps_its_meaning_on_every_grid():
  # E is a voxel sum, so a particle's peak |E|^2 grows as dr^-6; the loss's
  # eps follows it (the paper's 100 on its own grid), keeping the dark level
  # the same fraction of the peak on a coarser grid.
  from msftnet import intensity, solids
  from msftnet.raster import rasterize
  assert Geometry().loss_eps == 100.0
  # (Without absorption, whose slice-wise discretisation differs between
  # the grids: peak |E|^2 = (sum rho)^2 exactly.)
  coarse = Geometry(n_voxels=32, detector_px=64, absorption_length_nm=np.inf)
  fine = Geometry(absorption_length_nm=np.inf)
  assert coarse.loss_eps == pytest.approx(100.0 / 64)
  p = solids.SolidParams("Cube", size=0.5, theta=0.3, phi=0.2, alpha=0.5)
  ratios = [g.loss_eps / float(jnp.max(intensity(
      rasterize(*solids.half_spaces(p), g.n_voxels), g))) for g in (coarse, fine)]
  assert ratios[0] == pytest.approx(ratios[1], rel=0.05)
