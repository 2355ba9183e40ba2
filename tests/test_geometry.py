"""Tests of msftnet.Geometry."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import Geometry


def test_paper_defaults():
  g = Geometry()
  assert g.voxel_nm == pytest.approx(318.75 / 64)          # 4.98 nm
  assert g.k_per_nm == pytest.approx(2 * math.pi / 13.5)
  q = g.q_axis
  assert q.shape == (128,) and q[64] == 0.0
  assert q[65] - q[64] == pytest.approx(2 * math.pi / 850)
  # The detector reaches just past k: scattering angles up to ~90 degrees.
  assert g.q_max_per_nm > g.k_per_nm
  mask = g.ewald_mask
  assert mask.shape == (128, 128) and mask[64, 64] and not mask[0, 0]
  assert 0.7 < mask.mean() < 0.8
  qz = g.qz
  assert qz[64, 64] == 0.0 and np.all(qz[~mask] == 0.0)
  qy, qx = g.q_grid
  k = g.k_per_nm
  np.testing.assert_allclose(
      qz[mask], k - np.sqrt(k**2 - qx[mask]**2 - qy[mask]**2))
  assert np.nanmax(g.scattering_angle_rad) < math.pi / 2 + 1e-9
  assert g.amplitude_attenuation_per_nm == pytest.approx(1 / 12.5)


def test_coordinates_centred_and_beam_entry_at_zero():
  for n in (7, 8):
    g = Geometry(n_voxels=n, box_nm=10.0 * n, detector_px=8, q_step_per_nm=0.05)
    np.testing.assert_allclose(g.in_plane_nm, -g.in_plane_nm[::-1])
    assert g.depth_nm[0] == 0.0 and g.depth_nm[-1] == pytest.approx(10.0 * (n - 1))


def test_absorption_conventions():
  assert Geometry(absorption="intensity").amplitude_attenuation_per_nm == (
      pytest.approx(0.5 / 12.5))
  assert Geometry(absorption_length_nm=math.inf).amplitude_attenuation_per_nm == 0


def test_hashable_and_static_under_jit():
  g1, g2 = Geometry(), Geometry()
  assert g1 == g2 and hash(g1) == hash(g2)
  assert g1.replace(n_voxels=192) != g1
  f = jax.jit(lambda x, g: x * g.voxel_nm, static_argnums=1)
  assert float(f(jnp.ones(()), g1)) == pytest.approx(g1.voxel_nm)
  with pytest.raises(dataclasses_error()):
    g1.n_voxels = 3


def dataclasses_error():
  import dataclasses
  return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_voxels=0), "n_voxels must lie in"),
    (dict(n_voxels=64.0), "n_voxels must be an integer"),
    (dict(detector_px=-5), "detector_px must lie in"),
    (dict(box_nm=-1.0), "box_nm must be a positive finite number"),
    (dict(box_nm=math.inf), "box_nm must be a positive finite number"),
    (dict(wavelength_nm=float("nan")), "wavelength_nm must be a positive"),
    (dict(absorption_length_nm=0.0), "absorption_length_nm must be a positive"),
    (dict(q_step_per_nm="big"), "q_step_per_nm must be a number"),
    (dict(absorption="phase"), "absorption must be one of"),
    (dict(n_voxels=8), "Nyquist"),
    (dict(n_voxels=40), "Nyquist"),        # q_max dr = 3.8: in (pi, 2 pi)
])
def test_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    Geometry(**kwargs)


def test_a_material_replaces_the_absorption_length_setting():
  """with_physics(material=...): a material replaces the paper's
  absorption-only setting (also one a model was trained with); "" or
  "paper" keeps it."""
  base = Geometry(absorption_length_nm=20.0, absorption="intensity")
  g = base.with_physics("pmsft", "0.11,0.079")
  assert g.material.delta == pytest.approx(0.11)
  assert g.material.beta == pytest.approx(0.079)
  assert g.forward_model == "pmsft"
  assert (g.absorption_length_nm, g.absorption) == (12.5, "amplitude")
  assert g.amplitude_attenuation_per_nm == pytest.approx(g.k_per_nm * 0.079)
  for text in ("", "paper"):
    kept = base.with_physics(material=text)
    assert kept.material is None and kept == base
  assert base.with_physics() == base
  with pytest.raises(ValueError, match="material"):
    base.with_physics(material="silver")
