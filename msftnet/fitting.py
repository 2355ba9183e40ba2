"""Forward fitting of parametrised solids to a pattern: the classical baseline.

Barke et al. (2015) fitted polyhedra to experimental patterns with a simplex
search over shape parameters and MSFT simulations. Here the same fit runs by
gradient descent through the differentiable rasteriser and MSFT:

* classes: the 19 polyhedra and the sphere (``FIT_CLASSES``; the random
  hulls have no fixed shape to fit);
* parameters per start: circumradius ``R`` (box units; ``0.03 + 0.46
  sigmoid(a)``), a rotation (rotation vector), a stretch ``s`` in [0.5, 2]
  (``2^tanh(b)``) along a free body-frame direction, and the pattern's dark
  level ``u`` (``eps = max(I) 10^u``, as in
  :mod:`msftnet.refine.measurement`). The solid is ``{r : n_p . A^-1 r <= d_p}`` with ``A = R Rot (1 + (s-1) d d^T)``
  and the body's face planes ``(n_p, d_p)`` (unit circumradius);
* occupancy: the signed distance to the solid in voxel widths through the
  linear ramp of :mod:`msftnet.raster` (one sample per voxel; a dense
  ``[N^3, planes]`` evaluation, which XLA turns into one matrix product);
* objective: the masked pattern loss of :mod:`msftnet.refine.measurement`
  (pixels outside the valid mask have no influence);
* ``starts`` random starts per class (uniform random rotations, circumradii
  spread geometrically over [0.1, 0.4] box), all starts of a class in one
  jitted ``lax.scan`` of Adam;
* coarse to fine (``coarse_steps > 0``): every start of every class takes
  ``coarse_steps`` iterations on the coarse problem of
  :mod:`msftnet.refine.measurement` (N/2 voxels, the central M/2 pixels, the
  affine-invariant loss, since the crop's normalisation is not the full
  pattern's); the best start of each class is then scored on the full
  problem, and the ``keep`` classes with the lowest coarse loss continue
  from it for ``steps`` iterations on the full problem. ``coarse_steps=0``
  fits every start of every class on the full problem (the former
  behaviour). The lowest full-problem loss wins. With ``coarse_survivors =
  k`` (0 < k < starts; 1 by default) the coarse stage halves: every start
  runs half the coarse steps, only the k best of its class run the other
  half (``coarse_survivors=0``: every start runs all of them).

Face planes are padded to 8, 16, 32 or 64 rows, so the 20 classes share
four compiled functions and a cube does not pay for 64 planes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.spatial.transform import Rotation

from msftnet import raster
from msftnet import solids
from msftnet.geometry import Geometry
from msftnet.refine import measurement as meas

__all__ = ["FitConfig", "FitResult", "ClassFit", "fit", "fit_class",
           "FIT_CLASSES", "solid_density"]

FIT_CLASSES = solids.POLYHEDRA + ("Sphere",)
_MIN_R, _SPAN_R = 0.03, 0.46


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Settings of the forward fit (hashable: static under jit)."""

  starts: int = 4
  steps: int = 30
  learning_rate: float = 0.05
  seed: int = 0
  classes: tuple[str, ...] = FIT_CLASSES
  coarse_steps: int = 80
  keep: int = 3
  coarse_survivors: int = 1

  def __post_init__(self):
    for name in self.classes:
      if name not in FIT_CLASSES:
        raise ValueError(f"FitConfig.classes: {name!r} cannot be fitted; "
                         f"expected some of {', '.join(FIT_CLASSES)}.")
    if (self.starts < 1 or self.steps < 0 or self.coarse_steps < 0
        or self.keep < 1 or self.coarse_survivors < 0):
      raise ValueError("FitConfig: starts and keep must be >= 1, steps, "
                       "coarse_steps and coarse_survivors >= 0; got "
                       f"starts={self.starts}, keep={self.keep}, "
                       f"steps={self.steps}, coarse_steps={self.coarse_steps}"
                       f", coarse_survivors={self.coarse_survivors}.")

  @property
  def class_fits(self) -> int:
    """Class fits per pattern (the ``total`` of :func:`fit`'s progress): one
    per class, plus the full-problem fits of the ``keep`` best after a
    coarse stage."""
    n = len(self.classes)
    return n + (min(self.keep, n) if self.coarse_steps else 0)


class ClassFit(NamedTuple):
  """The best start of one class."""

  polyhedron: str
  loss: float                 # masked pattern loss (mean over valid pixels)
  paper_loss: float           # metrics.pattern_mse protocol
  circumradius_nm: float      # before stretching
  stretch: float
  stretch_dir: tuple          # body frame, unit (z, y, x)
  rotation: tuple             # 3x3 rotation matrix (body -> box), rows
  dark_level: float


class FitResult(NamedTuple):
  """Output of :func:`fit`."""

  best: ClassFit
  per_class: tuple            # ClassFit for each fitted class
  density: np.ndarray         # [N, N, N] the best solid, anti-aliased
  pattern: np.ndarray         # [M, M] its simulated pattern


def _body_planes(name: str):
  nb, db = (np.zeros((0, 3)), np.zeros(0)) if name == "Sphere" else (
      solids.face_planes(name))
  rows = max(8, 1 << int(np.ceil(np.log2(max(len(nb), 1)))))
  n = np.zeros((rows, 3), np.float32)
  d = np.ones(rows, np.float32)
  n[:len(nb)], d[:len(db)] = nb, db
  return n, d


def _rotvec_matrix(v):
  """Rodrigues' formula, safe at v = 0."""
  theta2 = jnp.sum(v * v)
  theta = jnp.sqrt(theta2 + 1e-12)
  k = v / theta
  kx = jnp.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
  return (jnp.eye(3) + jnp.sin(theta) * kx
          + (1 - jnp.cos(theta)) * (kx @ kx))


def _linear_map(theta):
  radius = _MIN_R + _SPAN_R * jax.nn.sigmoid(theta["a"])
  stretch = 2.0 ** jnp.tanh(theta["b"])
  d = theta["dir"] / jnp.sqrt(jnp.sum(theta["dir"] ** 2) + 1e-12)
  s = jnp.eye(3) + (stretch - 1.0) * jnp.outer(d, d)
  # Scale down if the stretched solid would leave the support ball.
  radius = jnp.minimum(radius, 0.49 / jnp.maximum(stretch, 1.0))
  return radius * _rotvec_matrix(theta["rot"]) @ s, radius, stretch, d


def solid_density(theta, body_n, body_d, is_sphere, n: int) -> jax.Array:
  """Differentiable occupancy ``[N, N, N]`` of one parametrised solid."""
  a, _, _, _ = _linear_map(theta)
  a_inv = jnp.linalg.inv(a)
  nr = body_n @ a_inv                                   # (A^-T n_b) . r <= d_b
  norm2 = jnp.sum(nr * nr, axis=1)
  norm = jnp.sqrt(jnp.where(norm2 == 0, 1.0, norm2))
  nr, dr = nr / norm[:, None], body_d / norm             # padding rows stay 0
  quadric = a_inv.T @ a_inv
  # The data's rasteriser, one sample per voxel: the sphere is the
  # ellipsoid alone (no planes), a polyhedron its planes alone.
  return raster.rasterize(jnp.where(is_sphere, 0.0, nr),
                          jnp.where(is_sphere, 1.0, dr),
                          jnp.where(is_sphere, quadric, 0.0), n,
                          supersample=1, differentiable=True)


@functools.partial(jax.jit, static_argnames=("geometry", "steps",
                                             "learning_rate", "affine"))
def _fit_class(body_n, body_d, is_sphere, theta0, pattern, valid, *,
               geometry: Geometry, steps: int, learning_rate: float,
               affine: bool = False):
  """Adam on every start of ``theta0`` (leading axis): the fitted
  parameters, each start's final masked (``affine``: affine-invariant) loss,
  its paper-protocol loss and the best loss per step."""
  n = geometry.n_voxels
  vol = jax.vmap(lambda t: solid_density(t, body_n, body_d, is_sphere, n))
  k = theta0["a"].shape[0]
  pats = jnp.broadcast_to(pattern, (k,) + pattern.shape)
  vals = jnp.broadcast_to(valid, (k,) + valid.shape)
  u0, _ = meas.fit_dark_level(vol(theta0), pats, vals, geometry)
  theta = {**theta0, "u": u0}        # a coarse start's u is re-fitted here

  def per_start(t):
    rho = vol(t)
    sim = meas.simulate_with_dark_level(rho, geometry, t["u"])
    # sim is an affine map of log(I + eps): the affine loss of either is the same.
    loss = meas.affine_masked_mse if affine else meas.masked_mse
    return loss(sim, pats, vals), sim

  tx = optax.adam(learning_rate)

  def step(carry, _):
    t, s = carry
    (_, per), grads = jax.value_and_grad(
        lambda t: (jnp.sum(per_start(t)[0]), per_start(t)[0]),
        has_aux=True)(t)
    updates, s = tx.update(grads, s, t)
    return (optax.apply_updates(t, updates), s), jnp.min(per)

  (theta, _), history = jax.lax.scan(step, (theta, tx.init(theta)), None,
                                     length=steps)
  final, sims = per_start(theta)
  paper = meas.paper_mse(sims, pats, vals)
  return theta, final, paper, history


def _starts(config: FitConfig, class_index: int) -> dict:
  rng = np.random.default_rng([config.seed, class_index])
  k = config.starts
  radii = np.geomspace(0.1, 0.4, k) if k > 1 else np.array([0.25])
  rng.shuffle(radii)
  a = np.log((radii - _MIN_R) / (_SPAN_R - radii + _MIN_R))
  rot = Rotation.random(k, random_state=rng).as_rotvec()
  d = rng.normal(size=(k, 3))
  return {"a": a.astype(np.float32), "rot": rot.astype(np.float32),
          "b": np.zeros(k, np.float32), "dir": d.astype(np.float32)}


def _run(name: str, theta0: dict, pattern, valid, geometry: Geometry,
         steps: int, config: FitConfig, affine: bool = False):
  body_n, body_d = _body_planes(name)
  return jax.device_get(_fit_class(
      body_n, body_d, jnp.asarray(name == "Sphere"), theta0, pattern, valid,
      geometry=geometry, steps=steps, learning_rate=config.learning_rate,
      affine=affine))


def _class_fit(name: str, theta, final, paper, geometry: Geometry
               ) -> tuple[ClassFit, dict]:
  i = int(np.argmin(final))
  best = {k: np.asarray(v[i]) for k, v in theta.items()}
  a, radius, stretch, d = jax.device_get(_linear_map(best))
  rot = np.asarray(_rotvec_matrix(jnp.asarray(best["rot"])))
  return ClassFit(
      polyhedron=name, loss=float(final[i]), paper_loss=float(paper[i]),
      circumradius_nm=float(radius) * geometry.box_nm,
      stretch=float(stretch), stretch_dir=tuple(float(x) for x in d),
      rotation=tuple(tuple(float(x) for x in row) for row in rot),
      dark_level=float(best["u"])), best


def _checked(name, pattern, valid, geometry):
  pat, val, single = meas.check_patterns(pattern, valid, geometry.detector_px)
  if not single:
    raise ValueError("fit_class: give one pattern [M, M].")
  if name not in FIT_CLASSES:
    raise ValueError(f"fit_class: {name!r} cannot be fitted; expected one of "
                     f"{', '.join(FIT_CLASSES)}.")
  return pat[0], val[0]


def fit_class(name: str, pattern, valid=None, *, config: FitConfig = FitConfig(),
              geometry: Geometry) -> tuple[ClassFit, dict]:
  """Fit one class; returns its best start and that start's raw parameters.

  With ``config.coarse_steps > 0`` every start runs the coarse stage and the
  best one ``config.steps`` full-problem iterations; otherwise every start
  runs ``config.steps`` on the full problem.
  """
  pat, val = _checked(name, pattern, valid, geometry)
  theta0 = _starts(config, FIT_CLASSES.index(name))
  if config.coarse_steps:
    theta0 = _coarse_best(name, theta0, pat, val, geometry, config)[0]
  theta, final, paper, _ = _run(name, theta0, pat, val, geometry,
                                config.steps, config)
  return _class_fit(name, theta, final, paper, geometry)


def _coarse_best(name, theta0, pat, val, geometry, config):
  """The coarse stage of one class: its best start ``[1]`` and its loss."""
  coarse, crop, crop_valid = meas.coarse_problem(pat, val, geometry)
  steps, k = config.coarse_steps, config.coarse_survivors
  if 0 < k < config.starts and steps >= 2:
    # Successive halving: every start for half the steps, the best k on.
    theta, final, _, _ = _run(name, theta0, crop, crop_valid, coarse,
                              steps // 2, config, affine=True)
    best = np.argsort(final, kind="stable")[:k]
    theta0 = {key: np.asarray(v)[best] for key, v in theta.items()}
    steps -= steps // 2
  theta, final, _, _ = _run(name, theta0, crop, crop_valid, coarse, steps,
                            config, affine=True)
  i = int(np.argmin(final))
  return {k: np.asarray(v[i:i + 1]) for k, v in theta.items()}, float(final[i])


def fit(pattern, valid=None, *, config: FitConfig = FitConfig(),
        geometry: Geometry, progress=None) -> FitResult:
  """Fit every class of ``config.classes``; the lowest masked loss wins.

  Args:
    pattern: ``[M, M]`` normalised log pattern in [0, 1].
    valid: optional ``[M, M]`` bool mask of valid pixels.
    progress: optional callable ``(i, total, ClassFit)`` after each class
      (with a coarse stage, ``total`` counts the coarse fits of every class
      and the full-problem fits of the ``keep`` best).
  """
  names = config.classes
  pat, val = _checked(names[0], pattern, valid, geometry)
  fits, raw = {}, {}
  if not config.coarse_steps:
    for i, name in enumerate(names):
      fits[name], raw[name] = fit_class(name, pat, val, config=config,
                                        geometry=geometry)
      if progress is not None:
        progress(i + 1, config.class_fits, fits[name])
  else:
    keep = min(config.keep, len(names))
    total = config.class_fits
    coarse = {}
    for i, name in enumerate(names):
      theta0, loss = _coarse_best(name, _starts(config, FIT_CLASSES.index(name)),
                                  pat, val, geometry, config)
      # Scored on the full problem without iterations: comparable losses.
      fits[name], raw[name] = _class_fit(
          name, *_run(name, theta0, pat, val, geometry, 0, config)[:3],
          geometry)
      coarse[name] = (loss, theta0)
      if progress is not None:
        progress(i + 1, total, fits[name])
    ranked = sorted(names, key=lambda n: coarse[n][0])[:keep]
    for j, name in enumerate(ranked):
      fits[name], raw[name] = _class_fit(
          name, *_run(name, coarse[name][1], pat, val, geometry, config.steps,
                      config)[:3], geometry)
      if progress is not None:
        progress(len(names) + j + 1, total, fits[name])
  per_class = tuple(fits[n] for n in names)
  best = min(per_class, key=lambda f: f.loss)
  body_n, body_d = _body_planes(best.polyhedron)
  theta = {k: jnp.asarray(v) for k, v in raw[best.polyhedron].items()}
  rho = solid_density(theta, body_n, body_d,
                      jnp.asarray(best.polyhedron == "Sphere"),
                      geometry.n_voxels)
  sim = meas.simulate_with_dark_level(rho[None], geometry,
                                      jnp.asarray([best.dark_level]))[0]
  return FitResult(best=best, per_class=per_class, density=np.asarray(rho),
                   pattern=np.asarray(sim))
