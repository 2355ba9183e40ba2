"""Tests of the rasteriser (msftnet.raster)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import raster
from msftnet import solids


def _solid(i, **kw):
  return solids.sample_solid(i, **kw)


def test_volume_within_one_percent_at_64():
  checked = 0
  for i in range(120):
    p = _solid(i, test_set=i % 2 == 1)
    if p.size < 0.25 or checked >= 20:   # diameter >= a quarter of the box
      continue
    occ = np.asarray(raster.rasterize(*solids.half_spaces(p), 64))
    assert 0 <= occ.min() and occ.max() <= 1
    assert occ.sum() / 64**3 == pytest.approx(solids.volume(p), rel=0.01), p
    checked += 1
  assert checked == 20


def test_sphere_and_cut_sphere_volumes():
  p = solids.SolidParams("Sphere", size=0.6, stretch=1.4,
                         stretch_dir=(0.3, 0.5, 0.81))
  occ = raster.rasterize(*solids.half_spaces(p), 64)
  assert float(occ.sum()) / 64**3 == pytest.approx(solids.volume(p), rel=0.01)
  cut = solids.SolidParams("Sphere", size=0.6, cut=0.5, cut_dir=(0, 0, 1.0))
  occ = raster.rasterize(*solids.half_spaces(cut), 64)
  full = 4 / 3 * math.pi * 0.3**3
  assert float(occ.sum()) / 64**3 == pytest.approx(solids.volume(cut), rel=0.01)
  assert solids.volume(cut) == pytest.approx(full * (1 - 0.15625), rel=1e-9)


def test_stretched_extent_along_its_axis():
  base = dict(polyhedron="Cube", size=0.5, axis="C4",
              stretch_dir=tuple(solids.axis_labels("Cube")["C4"][0]),
              theta=0.4, phi=1.0, alpha=0.7)
  for stretch in (0.6, 1.0, 1.7):
    p = solids.SolidParams(stretch=stretch, **base)
    occ = np.asarray(raster.rasterize(*solids.half_spaces(p), 64))
    axis = p.rotation_matrix() @ np.asarray(p.stretch_dir)
    c = raster.grid_coords(64)
    zz, yy, xx = np.meshgrid(c, c, c, indexing="ij")
    proj = (zz * axis[0] + yy * axis[1] + xx * axis[2])[occ > 0.5]
    # A cube of circumradius 0.25 has half-width 0.25/sqrt(3) along C4.
    want = 0.25 / math.sqrt(3) * stretch
    assert proj.max() == pytest.approx(want, abs=1.5 / 64)
    assert -proj.min() == pytest.approx(want, abs=1.5 / 64)


def test_grid_matches_the_msft_geometry():
  from msftnet import Geometry
  g = Geometry(n_voxels=16, box_nm=80.0, detector_px=16)
  np.testing.assert_allclose(raster.grid_coords(16) * g.box_nm, g.in_plane_nm,
                             atol=1e-5)


def test_batch_equals_single_and_differentiable_equals_fast():
  ps = [_solid(i) for i in range(4)]
  hs = [solids.half_spaces(p) for p in ps]
  batch = raster.rasterize_batch(*[np.stack(x) for x in zip(*hs)], 32)
  for h, b in zip(hs, batch):
    np.testing.assert_allclose(raster.rasterize(*h, 32), b, atol=1e-6)
    np.testing.assert_allclose(raster.rasterize(*h, 32, differentiable=True),
                               b, atol=1e-6)


def test_gradient_with_respect_to_the_planes():
  p = solids.SolidParams("Octahedron", size=0.6, theta=0.3, phi=0.2, alpha=0.1)
  n, d, q = solids.half_spaces(p)
  vol = lambda off: jnp.sum(raster.rasterize(n, off, q, 32, differentiable=True))
  g = np.asarray(jax.grad(vol)(jnp.asarray(d)))
  active = np.linalg.norm(n, axis=1) > 0
  # Pushing a face outwards adds volume: about its area / voxel volume.
  assert np.all(g[active] > 0) and np.all(g[~active] == 0)
  h = 1e-3
  e = np.zeros_like(d)
  e[0] = h
  fd = (float(vol(jnp.asarray(d + e))) - float(vol(jnp.asarray(d - e)))) / (2 * h)
  assert g[0] == pytest.approx(fd, rel=0.05)
