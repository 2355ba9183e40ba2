"""The propagation MSFT against an independent reference, its limits, Mie."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import Geometry
from msftnet import Material
from msftnet import intensity
from msftnet import msft
from msftnet import pmsft
from msftnet.raster import rasterize

from conftest import required_import
from conftest import small_geometry

SILVER = Material(delta=0.1097, beta=0.0794, name="Ag, 13.5 nm")


def reference_pmsft(rho, g, delta, beta, padding):
  """Independent float64 reference: a slice-by-slice numpy beam propagation
  (angular spectrum on a zero-filled wider grid) and a direct sum over the
  voxels for every pixel, written from the model in pmsft's docstring."""
  n, m = g.n_voxels, g.detector_px
  dr = g.box_nm / n
  k = 2 * np.pi / g.wavelength_nm
  p = padding * n
  lo = (p - n) // 2
  freq = 2 * np.pi * np.fft.fftfreq(p, dr)
  kx, ky = np.meshgrid(freq, freq, indexing="xy")
  kz = np.sqrt((k * k - kx * kx - ky * ky).astype(complex))
  step = np.exp(1j * (kz - k) * dr)
  u = np.ones((p, p), complex)
  sources = np.zeros((n, n, n), complex)
  for z in range(n):
    u = np.fft.ifft2(np.fft.fft2(u) * step)
    u[lo:lo + n, lo:lo + n] *= np.exp(1j * k * complex(-delta, beta) * dr
                                      * rho[z])
    sources[z] = rho[z] * u[lo:lo + n, lo:lo + n]
  z = np.arange(n) * dr
  xy = (np.arange(n) - (n - 1) / 2) * dr
  zz, yy, xx = np.meshgrid(z, xy, xy, indexing="ij")
  q = (np.arange(m) - m // 2) * g.q_step_per_nm
  out = np.zeros((m, m), complex)
  for a, qy in enumerate(q):
    for b, qx in enumerate(q):
      if qx * qx + qy * qy < k * k:
        qz = k - np.sqrt(k * k - qx * qx - qy * qy)
        out[a, b] = np.sum(sources * np.exp(-1j * (qx * xx + qy * yy)
                                            + 1j * qz * zz))
  return out


def ball(n, radius_voxels):
  r = radius_voxels / n
  return np.asarray(rasterize(np.zeros((1, 3)), np.full(1, 10.0),
                              np.eye(3) / r**2, n, supersample=4))


@pytest.fixture
def rng():
  """A generator seeded per test (not shared between tests)."""
  return np.random.default_rng(2026)


def test_matches_the_independent_reference(rng):
  g = small_geometry(8, 12, material=SILVER)
  rho = rng.random((8, 8, 8))
  with jax.enable_x64(True):
    got = np.asarray(pmsft(jnp.asarray(rho), g, padding=3))
  want = reference_pmsft(rho, g, SILVER.delta, SILVER.beta, 3)
  assert np.max(np.abs(got - want)) < 1e-9 * np.max(np.abs(want))
  # Propagation and refraction matter at this strength: msft differs.
  with jax.enable_x64(True):
    plain = np.asarray(msft(jnp.asarray(rho), g))
  assert np.max(np.abs(plain - want)) > 0.05 * np.max(np.abs(want))


def test_projection_without_delta_is_the_msft(rng):
  """No propagator, delta = 0: the paper's MSFT exactly (its geometry)."""
  g = small_geometry(10, 16)
  rho = (rng.random((10, 10, 10)) > 0.4).astype(np.float32)
  a = np.asarray(pmsft(rho, g, propagate=False))
  b = np.asarray(msft(rho, g))
  assert np.max(np.abs(a - b)) < 2e-6 * np.max(np.abs(b))
  # The same with the paper's setting written as a material.
  gm = g.replace(material=g.refractive_index)
  np.testing.assert_allclose(np.asarray(pmsft(rho, gm, propagate=False)), a,
                             rtol=0, atol=2e-6 * np.max(np.abs(b)))


def test_propagation_correction_vanishes_with_the_index(rng):
  """delta = 0: the propagated field differs from the projection
  (the shadow diffracts inside the particle) by an amount proportional to
  beta, so pmsft -> msft as the index -> 1; delta = beta = 0 is the Born
  (kinematic) pattern of msft without absorption."""
  g = small_geometry(12, 16)
  rho = np.zeros((12, 12, 12), np.float32)
  rho[2:10, 3:9, 3:10] = 1.0
  def correction(beta):
    gb = g.replace(material=Material(0.0, beta))
    a, b = (np.asarray(pmsft(rho, gb, propagate=p)) for p in (True, False))
    return np.linalg.norm(a - b) / np.linalg.norm(b)
  big, small = correction(0.08), correction(0.01)
  assert big > 0.01
  assert small < big / 5
  born = g.replace(material=Material(0.0, 0.0))
  np.testing.assert_allclose(
      np.asarray(pmsft(rho, born)),
      np.asarray(msft(rho, g.replace(absorption_length_nm=math.inf))),
      rtol=0, atol=1e-5 * rho.sum())


def test_delta_alone_changes_the_pattern_and_reverses_with_the_beam(rng):
  """A transparent, refracting particle: pmsft depends on delta, msft not;
  without absorption a z-reversed object is no longer a point reflection."""
  g = small_geometry(16, 23, material=Material(0.1, 0.0))
  rho = np.zeros((16, 16, 16), np.float32)
  rho[2:14, 4:12, 5:10] = 1.0
  rho[2:6, 4:12, 5:14] = 1.0
  a = np.asarray(intensity(rho, g.replace(forward_model="pmsft")))
  b = np.asarray(intensity(rho[::-1], g.replace(forward_model="pmsft")))
  plain = np.asarray(intensity(rho, g))
  plain_b = np.asarray(intensity(rho[::-1], g))
  np.testing.assert_allclose(plain_b[::-1, ::-1], plain, rtol=1e-4,
                             atol=1e-4 * plain.max())
  assert np.abs(b[::-1, ::-1] - a).max() > 0.01 * a.max()
  assert np.abs(a - plain).max() > 0.01 * plain.max()


def test_silver_sphere_against_mie():
  """Ag sphere of radius 30 nm at 13.5 nm: Pearson r of log intensities
  within 60 degrees against the exact Mie solution (unpolarised)."""
  miepython = required_import("miepython")    # fails instead in CI
  g = Geometry(n_voxels=24, box_nm=24 * 318.75 / 64, detector_px=48,
               q_step_per_nm=2 * math.pi / 850 * 128 / 48, material=SILVER)
  rho = ball(24, 30 / g.voxel_nm)
  angle = g.scattering_angle_rad
  inside = np.where(np.isnan(angle), 0.0, angle)
  mie = miepython.i_unpolarized(SILVER.index.conjugate(),  # m = n - i kappa
                                2 * math.pi * 30 / g.wavelength_nm,
                                np.cos(inside).ravel()).reshape(angle.shape)
  sel = (inside <= math.radians(60)) & g.ewald_mask
  def r(model):
    i = np.asarray(intensity(rho, g.replace(forward_model=model)))
    return np.corrcoef(np.log(i[sel]), np.log(mie[sel]))[0, 1]
  assert r("pmsft") > 0.998
  assert r("msft") < 0.97


def test_gradient_matches_finite_differences(rng):
  g = small_geometry(6, 10, material=SILVER)
  with jax.enable_x64(True):
    rho = jnp.asarray(rng.random((6, 6, 6)))
    w = jnp.asarray(rng.random((10, 10)))
    loss = jax.jit(lambda r: jnp.sum(w * jnp.log(intensity(r, g.replace(
        forward_model="pmsft")) + 1.0)))
    grad = jax.jit(jax.grad(loss))(rho)
    for _ in range(2):
      d = jnp.asarray(rng.standard_normal((6, 6, 6)))
      h = 1e-6
      fd = (loss(rho + h * d) - loss(rho - h * d)) / (2 * h)
      assert float(jnp.vdot(grad, d)) == pytest.approx(float(fd), rel=1e-6)


def test_batch_vmap_and_loop_agree(rng):
  g = small_geometry(8, 12, material=SILVER)
  vols = rng.random((2, 2, 8, 8, 8)).astype(np.float32)
  one = jax.jit(lambda v: pmsft(v, g))
  loop = np.stack([np.stack([np.asarray(one(v)) for v in row])
                   for row in vols])
  batched = np.asarray(pmsft(vols, g))
  # chunk_size >= batch: the whole batch at once, as on accelerators.
  whole = np.asarray(pmsft(vols, g, chunk_size=4))
  vmapped = np.asarray(jax.jit(jax.vmap(jax.vmap(lambda v: pmsft(v, g))))(vols))
  for other in (batched, whole, vmapped):
    np.testing.assert_allclose(other, loop, rtol=0,
                               atol=1e-4 * np.abs(loop).max())
  grads = jax.jit(jax.vmap(jax.grad(
      lambda v: jnp.sum(jnp.abs(pmsft(v, g)) ** 2))))(vols[0])
  assert grads.shape == (2, 8, 8, 8) and np.all(np.isfinite(grads))


@pytest.mark.parametrize("padding", [0, 1.5, True, "2"])
def test_bad_padding_is_refused(padding):
  g = Geometry(n_voxels=8, box_nm=40.0, detector_px=12)
  with pytest.raises(ValueError, match="padding"):
    pmsft(np.zeros((8, 8, 8), np.float32), g, padding=padding)
