"""Half-spaces -> anti-aliased occupancy on an N^3 voxel grid.

A solid is ``{r : n_p . r <= d_p for all p} & {r^T Q r <= 1}`` in box units
(the box is ``[-1/2, 1/2]^3``, ``r = (z, y, x)``; see ``msftnet.solids``).
Voxel ``i`` has its centre at ``(i - (N - 1) / 2) / N``, the same grid as
``msftnet.Geometry.in_plane_nm / box_nm``.

Anti-aliasing: each voxel is split into ``s^3`` sub-voxels (``s = 2`` up to
N = 96 by default); for each the solid's normalised signed distance
``max_p (n_p . r - d_p) / w_p`` is taken (``w_p = (|n_z| + |n_y| + |n_x|) / (sN)``,
the width of the sub-voxel's projection on ``n_p``; the ellipsoid uses its
first-order distance) and turned into an inside fraction by the linear ramp
``clip(1/2 - distance, 0, 1)``, which is exact in volume for a single plane;
the sub-voxels are averaged. The volume is within 1% of the exact value at
64^3 (``tests/test_raster.py``); multiplying per-plane coverages instead is
biased low for many-faced solids. Fully
jit-able and vmap-able; ``differentiable=True`` makes it reverse-mode
differentiable in the planes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["rasterize", "rasterize_batch", "grid_coords", "sphere_density"]


def grid_coords(n: int, dtype=jnp.float32) -> jax.Array:
  """Voxel centres ``[N]`` in box units: ``(i - (N - 1) / 2) / N``."""
  return (jnp.arange(n, dtype=dtype) - (n - 1) / 2) / n


def _plane_distance(normal, offset, z, y, x, n):
  """Signed distance to a plane in units of the voxel's projected width."""
  dist = normal[0] * z + normal[1] * y + normal[2] * x - offset
  width = jnp.maximum(jnp.sum(jnp.abs(normal)) / n, 1e-6)
  return dist / width


def _ellipsoid_distance(quadric, z, y, x, n):
  qr = [quadric[i, 0] * z + quadric[i, 1] * y + quadric[i, 2] * x
        for i in range(3)]
  q = z * qr[0] + y * qr[1] + x * qr[2]
  grad_norm = jnp.maximum(jnp.sqrt(qr[0] ** 2 + qr[1] ** 2 + qr[2] ** 2), 1e-9)
  root = jnp.sqrt(jnp.maximum(q, 1e-18))
  dist = (root - 1.0) * root / grad_norm               # first-order distance
  width = (jnp.abs(qr[0]) + jnp.abs(qr[1]) + jnp.abs(qr[2])) / grad_norm / n
  rel = dist / jnp.maximum(width, 1e-6)
  rel = jnp.where(q < 1e-12, -1e6, rel)                # the centre is inside
  return jnp.where(jnp.trace(jnp.abs(quadric)) > 0, rel, -1e6)


@functools.partial(jax.jit,
                   static_argnames=("n", "supersample", "differentiable"))
def rasterize(normals, offsets, quadric, n: int, *,
              supersample: int | None = None,
              differentiable: bool = False) -> jax.Array:
  """Occupancy ``[N, N, N]`` float32 in [0, 1], (z, y, x).

  Args:
    normals: ``[P, 3]`` unit normals (rows of zeros are padding).
    offsets: ``[P]``, inside where ``n . r <= d`` (box units).
    quadric: ``[3, 3]``, inside where ``r^T Q r <= 1`` (zeros: ignored).
    n: grid size N.
    supersample: sub-voxels per axis (default 2 for N <= 96, else 1).
    differentiable: loop over all P planes with ``lax.scan`` (reverse-mode
      differentiable); otherwise only over the leading non-padding planes
      (faster for data generation).
  """
  s = (2 if n <= 96 else 1) if supersample is None else int(supersample)
  fine = n * s
  normals = jnp.asarray(normals, jnp.float32)
  offsets = jnp.asarray(offsets, jnp.float32)
  c = grid_coords(fine)
  z, y, x = c[:, None, None], c[None, :, None], c[None, None, :]
  dist = _ellipsoid_distance(jnp.asarray(quadric, jnp.float32), z, y, x, fine)
  dist = jnp.broadcast_to(dist, (fine, fine, fine))
  if differentiable:
    def body(acc, plane):
      return jnp.maximum(acc, _plane_distance(plane[0], plane[1], z, y, x,
                                              fine)), None
    dist, _ = jax.lax.scan(body, dist, (normals, offsets))
  else:
    active = jnp.sum(jnp.any(normals != 0, axis=1))

    def step(i, acc):
      return jnp.maximum(acc, _plane_distance(normals[i], offsets[i], z, y, x,
                                              fine))
    dist = jax.lax.fori_loop(0, active, step, dist)
  occ = jnp.clip(0.5 - dist, 0.0, 1.0)
  if s > 1:
    occ = occ.reshape(n, s, n, s, n, s).mean(axis=(1, 3, 5))
  return occ


def rasterize_batch(normals, offsets, quadrics, n: int) -> jax.Array:
  """``[B, P, 3], [B, P], [B, 3, 3]`` -> ``[B, N, N, N]``.

  Mapped one solid at a time (``lax.map``), so each loops over its own
  number of faces: faster than ``vmap``, which makes every solid of a
  batch iterate as many planes as the one with the most faces
  (benchmarks/RESULTS.md, "On-the-fly training data").
  """
  return jax.lax.map(lambda a: rasterize(a[0], a[1], a[2], n),
                     (normals, offsets, quadrics))


def sphere_density(n: int, radius) -> jax.Array:
  """Anti-aliased ball(s) of ``radius`` (box units, scalar or [R]) at the
  box centre: ``[..., N, N, N]`` (a linear ramp one voxel wide)."""
  c = (jnp.arange(n, dtype=jnp.float32) - (n - 1) / 2) / n
  r = jnp.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2
               + c[None, None, :] ** 2)
  radius = jnp.asarray(radius, jnp.float32)[..., None, None, None]
  return jnp.clip(0.5 - (r - radius) * n, 0.0, 1.0)
