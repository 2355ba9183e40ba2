"""Convex polytopes with free planes: the shapes of the polytope refinement.

The particles of the paper (and most real nanoparticles) are convex. A convex
body is the intersection of half-spaces ``{r : n_k . r <= h_k}``; ``K``
planes with *free* normals and offsets give a differentiable occupancy
(:func:`polytope_density`: the anti-aliased rasteriser's ramp, or each
boundary voxel's exact volume fraction) that the refinement
(:mod:`msftnet.refine.polytope`) and the fits (:mod:`msftnet.fitting`) move
against a pattern through the MSFT. Compared with free voxels this
representation cannot produce haze, voids or rounded blobs: every shape is
a faceted convex solid.

* :func:`fibonacci_directions`: ``K`` nearly uniform unit directions;
* :func:`polytope_density`: ``(normals [..., K, 3], offsets [..., K])`` ->
  occupancy ``[..., N, N, N]`` (normals need not be unit: they are
  normalised inside);
* :func:`support_offsets`: the support function of a voxel shape along given
  directions, about its centroid (turns a network prediction or any density
  into a start); :func:`ellipsoid_offsets`: that of an ellipsoid;
* :func:`centre_density`: a voxel shape moved to the box centre.

Translations of the particle are invisible in the intensity, so every start is
centred in the box.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from msftnet import raster

__all__ = ["fibonacci_directions", "polytope_density", "support_offsets",
           "centre_density", "ellipsoid_offsets", "depth_log_ratio", "centroid",
           "PROFILES"]


def fibonacci_directions(k: int) -> np.ndarray:
  """``[K, 3]`` unit vectors (z, y, x) spread nearly uniformly (golden spiral)."""
  if k < 4:
    raise ValueError(f"fibonacci_directions: need at least 4 directions for "
                     f"a bounded polytope, got {k}.")
  i = np.arange(k) + 0.5
  z = 1.0 - 2.0 * i / k
  rho = np.sqrt(np.maximum(1.0 - z * z, 0.0))
  phi = np.pi * (3.0 - np.sqrt(5.0)) * i
  return np.stack([z, rho * np.sin(phi), rho * np.cos(phi)], -1).astype(
      np.float32)


def unit(normals):
  """Plane normals ``[..., 3]`` scaled to unit length (as
  :func:`polytope_density` reads them)."""
  return normals / jnp.sqrt(jnp.sum(normals**2, axis=-1, keepdims=True)
                            + 1e-12)


def _grid(n: int):
  c = raster.grid_coords(n)
  return c[:, None, None], c[None, :, None], c[None, None, :]


def _active_plane(unit_n, h, n: int):
  """Distance to the most violated plane (voxel widths) and its index."""
  z, y, x = _grid(n)
  width = jnp.maximum(jnp.sum(jnp.abs(unit_n), axis=-1) / n, 1e-6)

  def body(k, carry):
    acc, idx = carry
    d = (unit_n[k, 0] * z + unit_n[k, 1] * y + unit_n[k, 2] * x
         - h[k]) / width[k]
    better = d > acc
    return jnp.where(better, d, acc), jnp.where(better, k, idx)

  init = (jnp.full((n, n, n), -jnp.inf, jnp.float32),
          jnp.zeros((n, n, n), jnp.int32))
  acc, idx = jax.lax.fori_loop(0, h.shape[0], body, init)
  return acc, idx, width


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _occupancy(unit_n, h, n):
  acc, _, _ = _active_plane(unit_n, h, n)
  return jnp.clip(0.5 - acc, 0.0, 1.0)


def _occupancy_fwd(unit_n, h, n):
  acc, idx, width = _active_plane(unit_n, h, n)
  return jnp.clip(0.5 - acc, 0.0, 1.0), (unit_n, acc, idx, width)


def _occupancy_bwd(n, res, g):
  # occ = clip(1/2 - d, 0, 1), d = (n_k . r - h_k) / w_k for the active k,
  # w_k = |n_k|_1 / N: only voxels on the ramp (|d| < 1/2) carry gradient,
  # each to its own active plane (a segment sum over the K planes).
  unit_n, acc, idx, width = res
  k = width.shape[0]
  z, y, x = _grid(n)
  gd = jnp.where(jnp.abs(acc) < 0.5, -g, 0.0)
  shape = (n, n, n)
  cols = jnp.stack([gd, gd * jnp.broadcast_to(z, shape),
                    gd * jnp.broadcast_to(y, shape),
                    gd * jnp.broadcast_to(x, shape), gd * acc], -1)
  sums = jax.ops.segment_sum(cols.reshape(-1, 5), idx.reshape(-1),
                             num_segments=k)                # [K, 5]
  grad_h = -sums[:, 0] / width
  grad_n = (sums[:, 1:4] / width[:, None]
            - sums[:, 4:5] * jnp.sign(unit_n) / (n * width[:, None]))
  return grad_n, grad_h


_occupancy.defvjp(_occupancy_fwd, _occupancy_bwd)


#: Voxel widths below this (a normal's component, in voxels) count as this
#: in the box profile, whose formula divides by each width.
_MIN_WIDTH = 0.02

_CORNERS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1)
                     for k in (0, 1)])                      # [8, 3]
_SIGNS = (-1.0) ** _CORNERS.sum(axis=1)                      # [8]


def _box_terms(unit_n, acc, idx):
  """Per voxel of its active plane (``acc``, ``idx`` of
  :func:`_active_plane`): whether the voxel is on the profile's slope, the
  clamped widths ``a`` (3 arrays, voxels), the depth inside the plane
  (voxels) clamped to the slope (so that no cube of a large number
  cancels), half the slope's width, and ``d a_j / d n_j`` (3 arrays:
  ``sign(n_j)`` where the width is not clamped)."""
  absn = jnp.abs(unit_n)
  table = jnp.concatenate(
      [jnp.sum(absn, -1, keepdims=True), jnp.maximum(absn, _MIN_WIDTH),
       jnp.where(absn > _MIN_WIDTH, jnp.sign(unit_n), 0.0)], -1)  # [K, 7]
  per_voxel = table.at[idx].get(mode="promise_in_bounds")      # [.., 7]
  t = -acc * per_voxel[..., 0]        # acc is in units of |n|_1 / N
  a = [per_voxel[..., 1 + j] for j in range(3)]
  half = (a[0] + a[1] + a[2]) / 2
  on = jnp.abs(t) < half
  return (on, a, jnp.clip(t, -half, half), half,
          [per_voxel[..., 4 + j] for j in range(3)])


def _box_sums(a, t, half, power):
  """``sum_c s_c x_c^power`` over the cube's corners ``c`` (``x_c = t +
  half - c . a``, positive part), and the same weighted by ``1/2 - c_j``."""
  total, weighted = 0.0, [0.0, 0.0, 0.0]
  for corner, sign in zip(_CORNERS.tolist(), _SIGNS.tolist()):
    x = t + half - sum(c * aj for c, aj in zip(corner, a) if c)
    term = sign * jnp.maximum(x, 0.0) ** power
    total = total + term
    weighted = [w + (0.5 - c) * term for w, c in zip(weighted, corner)]
  return total, weighted


def _box_value(unit_n, acc, idx):
  _, a, t, half, _ = _box_terms(unit_n, acc, idx)
  cube, _ = _box_sums(a, t, half, 3)
  return jnp.clip(cube / (6.0 * a[0] * a[1] * a[2]), 0.0, 1.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _box_occupancy(unit_n, h, n):
  acc, idx, _ = _active_plane(unit_n, h, n)
  return _box_value(unit_n, acc, idx)


def _box_fwd(unit_n, h, n):
  acc, idx, _ = _active_plane(unit_n, h, n)
  occ = _box_value(unit_n, acc, idx)
  return occ, (unit_n, acc, idx, occ)


def _box_bwd(n, res, g):
  # occ = F(t; a), t = N (h_k - n_k . r), a_j = max(|n_kj|, w_min), for the
  # active plane k: dF/dt = sum s 3 x_+^2 / P6 and
  # dF/da_j = sum s 3 x_+^2 (1/2 - c_j) / P6 - F / a_j (c: the corner).
  unit_n, acc, idx, occ = res
  k = unit_n.shape[0]
  z, y, x = _grid(n)
  on, a, t, half, slope = _box_terms(unit_n, acc, idx)
  p6 = 6.0 * a[0] * a[1] * a[2]
  sq, sq_w = _box_sums(a, t, half, 2)
  gf = jnp.where(on, g * 3.0 * sq / p6, 0.0)
  ga = [jnp.where(on, g * slope[j] * (3.0 * sq_w[j] / p6 - occ / a[j]), 0.0)
        for j in range(3)]
  shape = (n, n, n)
  cols = jnp.stack([gf, gf * jnp.broadcast_to(z, shape),
                    gf * jnp.broadcast_to(y, shape),
                    gf * jnp.broadcast_to(x, shape)] + ga, -1)
  sums = jax.ops.segment_sum(cols.reshape(-1, 7), idx.reshape(-1),
                             num_segments=k)                # [K, 7]
  grad_h = n * sums[:, 0]
  grad_n = -n * sums[:, 1:4] + sums[:, 4:7]
  return grad_n, grad_h


_box_occupancy.defvjp(_box_fwd, _box_bwd)

#: Voxel profiles of :func:`polytope_density`.
PROFILES = ("ramp", "box")


def polytope_density(normals, offsets, n: int, profile: str = "ramp"
                     ) -> jax.Array:
  """Occupancy of ``{r : n_k . r <= h_k for all k}``: ``[..., N, N, N]``.

  Args:
    normals: ``[..., K, 3]`` outward normals (z, y, x); normalised here.
    offsets: ``[..., K]`` plane offsets ``h_k`` in box units (the box is
      ``[-1/2, 1/2]^3``, its centre the origin).
    n: grid size N.
    profile: how a voxel crossed by a face is filled, from its most
      violated plane (largest signed distance in units of the voxel's
      projected width ``|n|_1 / N``):

      * ``"ramp"`` (default): :func:`msftnet.raster.rasterize` with
        ``supersample=1``, the linear ramp ``clip(1/2 - d, 0, 1)`` (exact
        in volume for one plane, not in shape).
      * ``"box"``: the exact fraction of the voxel's cube on the
        inside of that plane (the distribution of ``n . r`` over a cube is
        the sum of three uniform ones, so the fraction is a piecewise cubic
        in the plane's depth: smooth where the ramp has kinks, and what a
        continuous particle fills). Normal components below
        ``_MIN_WIDTH`` voxels count as that width. Costlier than the
        ramp (eight corner terms per boundary voxel; measured in
        docs/results.md).

  Both have a hand-written reverse mode: the forward pass records each
  voxel's active plane, and the backward pass sums the boundary voxels'
  gradients per plane (``O(N^3)`` work instead of differentiating a loop
  over planes).
  """
  if profile not in PROFILES:
    raise ValueError(f"polytope_density: profile must be one of {PROFILES}, "
                     f"got {profile!r}.")
  normals = unit(jnp.asarray(normals, jnp.float32))
  offsets = jnp.asarray(offsets, jnp.float32)
  batch = offsets.shape[:-1]
  k = offsets.shape[-1]
  occupancy = _box_occupancy if profile == "box" else _occupancy
  one = lambda nn, hh: occupancy(nn, hh, n)
  out = jax.vmap(one)(normals.reshape((-1, k, 3)), offsets.reshape((-1, k)))
  return out.reshape(batch + (n, n, n))


def bodies_density(normals, offsets, n: int, profile: str = "ramp"
                   ) -> jax.Array:
  """Occupancy of a union of ``B`` polytopes: ``[..., N, N, N]``.

  Args:
    normals: ``[..., B, K, 3]``, offsets ``[..., B, K]``: the bodies'
      planes, as in :func:`polytope_density`.
    n, profile: as in :func:`polytope_density`.

  A voxel is empty only where every body leaves it empty:
  ``1 - prod_b (1 - rho_b)``, 1 inside any body, each body's own profile at
  its faces, and differentiable in every body (where one body covers a
  voxel, the others' planes get no gradient there).
  """
  rho = polytope_density(normals, offsets, n, profile)
  return 1.0 - jnp.prod(1.0 - rho, axis=-4)


def centroid(density):
  """The density's centre of mass ``[..., 3]`` (z, y, x; box units, 0 at
  the box centre). Differentiable (jnp); 0 for an empty volume."""
  rho = jnp.asarray(density, jnp.float32)
  c = raster.grid_coords(rho.shape[-1])
  mass = jnp.maximum(jnp.sum(rho, axis=(-3, -2, -1)), 1e-6)
  axes = (-3, -2, -1)
  return jnp.stack([
      jnp.sum(jnp.sum(rho, axis=tuple(a for a in axes if a != ax)) * c, -1)
      / mass for ax in axes], axis=-1)


#: The 99 % quantile of :func:`depth_log_ratio` over the generator's
#: truncated test solids (400 solids of seeds 900000-900399 at 32^3:
#: ``python -m benchmarks.depth_ratio``, docs/results.md, "Two ideas about
#: bodies that touch the box"): how deep along the beam a particle of the
#: training distribution gets. The refinement's depth prior and the
#: confidence's deep-body rule are set from it.
GENERATOR_DEPTH_Q99 = 1.02


def depth_log_ratio(density):
  """How much a body extends along the beam (axis 0, z) against across it:
  ``log(var_z / mean(var_y, var_x))`` of the density's second moments
  about its centroid; 0 for an isotropic body. Differentiable (jnp), any
  leading batch axes ``[..., N, N, N]``; 0 for an empty volume (with a
  finite gradient)."""
  rho = jnp.asarray(density, jnp.float32)
  c = raster.grid_coords(rho.shape[-1])
  mass = jnp.maximum(jnp.sum(rho, axis=(-3, -2, -1)), 1e-6)
  mean = centroid(rho)
  axes = (-3, -2, -1)
  var = [jnp.maximum(
      jnp.sum(jnp.sum(rho, axis=tuple(a for a in axes if a != ax)) * c ** 2,
              -1) / mass - mean[..., i] ** 2, 1e-12)
         for i, ax in enumerate(axes)]
  return jnp.log(var[0] / (0.5 * (var[1] + var[2])))


def centre_density(density, threshold: float = 0.5) -> np.ndarray:
  """Roll a voxel shape so that its centroid (of ``density > threshold``)
  sits at the box centre (integer voxel shift); numpy ``[N, N, N]``."""
  rho = np.asarray(density)
  mask = rho > threshold
  if not mask.any():
    return rho
  n = rho.shape[-1]
  idx = np.argwhere(mask).mean(axis=0)
  shift = np.rint((n - 1) / 2 - idx).astype(int)
  return np.roll(rho, tuple(shift), axis=(0, 1, 2))


def support_offsets(density, directions, threshold: float = 0.5,
                    centred: bool = True) -> np.ndarray:
  """Support function of ``density > threshold`` about its centroid (or,
  with ``centred=False``, about the box centre: the body stays where it
  is).

  Args:
    density: ``[N, N, N]`` voxel shape.
    directions: ``[K, 3]`` unit vectors.
    threshold: the voxels that count as inside.
    centred: about the centroid ``c`` (True) or the box centre (``c = 0``).

  Returns:
    ``[K]`` offsets in box units: ``max_r d . (r - c) + w / 2``, with ``w``
    the voxel's projected width along ``d``, so that the polytope of these
    planes circumscribes the voxel set. An empty shape gives a small ball
    (1.5 voxels) about ``c``.
  """
  rho = np.asarray(density)
  n = rho.shape[-1]
  d = np.asarray(directions, np.float64)
  pts = np.argwhere(rho > threshold)
  if len(pts) == 0:
    return np.full(len(d), 1.5 / n, np.float32)
  r = (pts - (pts.mean(axis=0) if centred else (n - 1) / 2)) / n
  width = np.abs(d).sum(axis=1) / n
  return ((r @ d.T).max(axis=0) + 0.5 * width).astype(np.float32)


def ellipsoid_offsets(directions, radius: float, scale=(1.0, 1.0, 1.0)
                      ) -> np.ndarray:
  """Offsets ``[K]`` of the polytope circumscribing the ellipsoid with
  semi-axes ``radius * scale`` (z, y, x): its support function ``|S d|``."""
  d = np.asarray(directions, np.float64)
  return (radius * np.linalg.norm(d * np.asarray(scale, float), axis=1)
          ).astype(np.float32)
