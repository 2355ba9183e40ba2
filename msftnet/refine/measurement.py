"""The model of a measurement: what a refiner or a fitter compares with data.

A measured pattern is a normalised log image whose dark (background) level
relative to the peak is unknown, seen through a valid-pixel mask. Its model
here: a density ``[N, N, N]`` -> the intensity of the forward model
(:func:`msftnet.intensity`) -> ``normalise(log(I + max(I) 10^u))`` with the
dark level ``u`` a nuisance parameter, compared inside the valid pixels.

* losses: :func:`masked_mse` (the refinement's reported loss),
  :func:`paper_mse` (the paper's protocol, Fig. 11) and
  :func:`affine_masked_mse` (only the shape of the log pattern: the
  polytope refinement's and the fits' objective);
* the dark level: :func:`simulate_with_dark_level`,
  :func:`fit_dark_level` (grid search, masked loss), :func:`affine_dark_search`
  (grid search, affine loss) over :data:`DARK_GRID`;
* :func:`pattern_losses` / :func:`batch_losses`: a density's simulated
  pattern with its fitted dark level and both losses;
* photon counts: :func:`counts_from_pattern` (the counts behind a
  normalised ``log(k + d)`` pattern) and :func:`poisson_deviance` (their
  Poisson objective, ``RefineConfig.objective="poisson"``);
* the data: :func:`check_patterns` (validation and the network's input) and
  :func:`coarse_problem` (the coarse stage's grid and crop).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from msftnet import augment
from msftnet.geometry import Geometry
from msftnet.msft import intensity
from msftnet.msft import log_pattern

__all__ = ["masked_mse", "paper_mse", "affine_masked_mse", "DARK_GRID",
           "log_with_dark", "simulate_with_dark_level", "fit_dark_level",
           "dark_grid", "affine_dark_search", "batch_losses", "affine_objective",
           "pattern_losses", "counts_from_pattern", "poisson_deviance",
           "count_dark_bound", "FLOOR_QUANTILE", "check_photons",
           "check_patterns", "coarse_problem", "COARSE_MIN_VALID"]


def masked_mse(sim, pattern, valid) -> jax.Array:
  """Per-pattern mean over valid pixels of ``(sim - pattern)^2``: ``[...]``."""
  valid = jnp.asarray(valid, sim.dtype)
  return (jnp.sum(valid * (sim - pattern) ** 2, axis=(-2, -1))
          / jnp.maximum(jnp.sum(valid, axis=(-2, -1)), 1.0))


def paper_mse(sim, pattern, valid=None) -> jax.Array:
  """The paper's protocol (Fig. 11), per pattern ``[...]``: the mean over
  *all* ``M x M`` pixels of ``(sim - pattern)^2``, pixels outside ``valid``
  counting as zero difference (:data:`msftnet.metrics.PAPER_PROTOCOL`)."""
  d2 = (sim - pattern) ** 2
  if valid is not None:
    d2 = jnp.asarray(valid, d2.dtype) * d2
  return jnp.mean(d2, axis=(-2, -1))


def affine_masked_mse(logs, pattern, valid) -> jax.Array:
  """Per-pattern ``min_{a, b}`` mean over valid pixels of ``(a logs + b - pattern)^2``.

  The normalisation of a measured log pattern is not known exactly: its
  min-max scaling depends on single (noisy, hot, saturated or masked) pixels,
  and noise filters rescale it. This loss fits the scale ``a`` and offset
  ``b`` of the simulated log pattern ``logs`` (e.g. ``log(I + eps)``) to
  ``pattern`` by least squares inside the valid pixels, in closed form
  (``var(pattern) (1 - r^2)`` with the masked Pearson ``r``), so only the
  *shape* of the log pattern is compared. Shapes ``[..., M, M]`` -> ``[...]``.
  """
  v = jnp.asarray(valid, logs.dtype)
  nv = jnp.maximum(jnp.sum(v, axis=(-2, -1)), 1.0)
  mean = lambda x: jnp.sum(x * v, axis=(-2, -1)) / nv
  ds = (logs - mean(logs)[..., None, None]) * v
  dt = (pattern - mean(pattern)[..., None, None]) * v
  cov = jnp.sum(ds * dt, axis=(-2, -1))
  var_s = jnp.sum(ds * ds, axis=(-2, -1))
  var_t = jnp.sum(dt * dt, axis=(-2, -1))
  return (var_t - cov**2 / jnp.maximum(var_s, 1e-20)) / nv


def counts_from_pattern(pattern, photons) -> jax.Array:
  """The photon counts ``k`` behind a pattern ``normalise(log(k + d))``.

  ``photons = (log_lo, log_hi, d)``: the range of ``log(k + d)`` over the
  valid pixels that the min-max normalisation mapped to [0, 1], and the
  photons ``d`` added before the log (:func:`msftnet.measured.photons_of`
  reads them off a loaded frame's info). ``pattern [..., M, M]`` ->
  ``k = max(exp(log_lo + p (log_hi - log_lo)) - d, 0)``, the same shape;
  meaningful inside the valid pixels only.
  """
  ph = jnp.asarray(photons, jnp.float32)
  lo, hi, d = ph[..., 0], ph[..., 1], ph[..., 2]
  logs = lo[..., None, None] + pattern * (hi - lo)[..., None, None]
  return jnp.maximum(jnp.exp(logs) - d[..., None, None], 0.0)


def check_photons(photons, name: str = "the pattern"
                  ) -> tuple[float, float, float]:
  """``photons`` as ``(log_lo, log_hi, dark)`` floats for the Poisson
  objective; ValueError in one sentence naming ``name`` when they are
  missing or unusable (not three finite numbers with ``log_hi > log_lo``
  and ``dark > 0``)."""
  ph = None if photons is None else np.asarray(photons, np.float64)
  if (ph is None or ph.shape != (3,) or not np.all(np.isfinite(ph))
      or not ph[1] > ph[0] or not ph[2] > 0):
    raise ValueError(
        f"{name} has no usable photon counts for the Poisson objective "
        f"(photons {photons!r}, expected (log_lo, log_hi, dark) with "
        "log_hi > log_lo and dark > 0: read the input as counts, "
        "msftnet.measured.photons_of).")
  return tuple(float(x) for x in ph)


#: The quantile of the valid pixels' counts that bounds the background
#: of the Poisson objective (:func:`count_dark_bound`).
FLOOR_QUANTILE = 0.01


def count_dark_bound(counts, valid) -> float:
  """The highest dark level ``u`` (log10 of the peak) the counts allow:
  ``log10((floor + 1) / max k)`` over the valid pixels, the floor the
  :data:`FLOOR_QUANTILE` of their counts (a flat background above the
  dimmest pixels' counts, and a photon of shot noise, is not in the data).
  Without it the Poisson fit can explain a wrong shape's missing fringes by
  a background of up to the peak (tests: test_refine)."""
  k = np.asarray(counts, np.float64)[np.asarray(valid, bool)]
  if not k.size or not k.max() > 0:
    return 0.0
  floor = float(np.quantile(k, FLOOR_QUANTILE))
  return float(min(np.log10((floor + 1.0) / k.max()), 0.0))


def poisson_deviance(mu, counts, valid) -> jax.Array:
  """Per-pattern Poisson deviance of counts ``k`` under ``lambda = a mu``,
  the scale ``a`` fitted in closed form, per valid pixel: ``[...]``.

  ``mu [..., M, M]``: the model's expected counts up to a scale (the
  simulated intensity plus its dark level, > 0); ``a = sum k / sum mu``
  over the valid pixels (the maximum-likelihood scale), and the deviance
  ``2 sum (k log(k / lambda) - k + lambda)`` (``k log k = 0`` at ``k = 0``)
  is divided by the number of valid pixels: about 1 when the model is
  right and the only noise is shot noise, at high counts (less where the
  pixels hold a few photons).
  """
  v = jnp.asarray(valid, mu.dtype)
  nv = jnp.maximum(jnp.sum(v, axis=(-2, -1)), 1.0)
  a = (jnp.sum(v * counts, axis=(-2, -1))
       / jnp.maximum(jnp.sum(v * mu, axis=(-2, -1)), 1e-30))
  lam = jnp.maximum(a[..., None, None] * mu, 1e-30)
  per = jax.scipy.special.xlogy(counts, counts / lam) - counts + lam
  return 2.0 * jnp.sum(v * per, axis=(-2, -1)) / nv


#: Dark levels ``u`` (``eps = max(I) 10^u``) of the grid searches.
DARK_GRID = tuple(np.linspace(-8.0, 0.0, 33).tolist())


def dark_grid(max_dark: float = 0.0) -> jax.Array:
  """The levels of :data:`DARK_GRID` up to ``max_dark`` (log10 of the peak;
  the lowest level at least): ``[U]`` float32."""
  grid = [u for u in DARK_GRID if u <= max_dark + 1e-6] or [DARK_GRID[0]]
  return jnp.asarray(grid, jnp.float32)


def log_with_dark(inten, u):
  """``normalise(log(I + max(I) 10^u))``; ``u`` broadcasts to ``[..., 1, 1]``."""
  peak = jnp.max(inten, axis=(-2, -1), keepdims=True)
  return log_pattern(inten, eps=jnp.maximum(peak * 10.0**u, 1e-30))


def simulate_with_dark_level(density, geometry: Geometry, u) -> jax.Array:
  """Normalised log pattern with ``eps = max(I) 10^u`` per sample: ``[B, M, M]``."""
  return log_with_dark(intensity(density, geometry),
                       jnp.reshape(u, u.shape + (1, 1)))


def fit_dark_level(density, pattern, valid, geometry: Geometry,
                   max_dark: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Grid search of ``u`` over :func:`dark_grid` ``(max_dark)`` per sample
  (masked loss).

  Returns ``(u [B], masked loss at u [B])``.
  """
  inten = intensity(density, geometry)
  grid = dark_grid(max_dark)
  table = jax.lax.map(
      lambda u: masked_mse(log_with_dark(inten, u), pattern, valid),
      grid)                                                    # [U, B]
  i = jnp.argmin(table, axis=0)
  return grid[i], jnp.take_along_axis(table, i[None], axis=0)[0]


def affine_dark_search(inten, pattern, valid, max_dark: float = 0.0
                       ) -> tuple[jax.Array, jax.Array]:
  """Best ``u`` of :func:`dark_grid` ``(max_dark)`` per sample for the
  affine-invariant loss.

  Args:
    inten: ``[S, M, M]`` intensities; pattern, valid: broadcastable to it.
    max_dark: the highest dark level searched (log10 of the peak).

  Returns ``(u [S], loss at u [S])``.
  """
  peak = jnp.max(inten, axis=(-2, -1), keepdims=True)
  grid = dark_grid(max_dark)
  table = jax.lax.map(lambda u: affine_masked_mse(
      jnp.log(inten + jnp.maximum(peak * 10.0 ** u, 1e-30)), pattern, valid),
      grid)
  return grid[jnp.argmin(table, axis=0)], jnp.min(table, axis=0)


@functools.partial(jax.jit, static_argnames=("geometry", "max_dark"))
def batch_losses(density, pattern, valid, geometry: Geometry,
                 max_dark: float = 0.0):
  """:func:`pattern_losses` of a batch ``[B, N, N, N]`` in one compiled call:
  ``(sim [B, M, M], masked [B], paper [B], u [B])``."""
  u, _ = fit_dark_level(density, pattern, valid, geometry, max_dark)
  sim = simulate_with_dark_level(density, geometry, u)
  return (sim, masked_mse(sim, pattern, valid), paper_mse(sim, pattern, valid),
          u)


@functools.partial(jax.jit, static_argnames=("geometry", "max_dark"))
def affine_objective(density, pattern, valid, geometry: Geometry,
                     max_dark: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """The polytope refinement's objective for any densities ``[B, N, N, N]``
  against ``pattern [B, M, M]``, the dark level from :func:`dark_grid`
  (:func:`affine_dark_search`): ``(u [B], loss [B])``."""
  return affine_dark_search(intensity(density, geometry), pattern, valid,
                            max_dark)


def pattern_losses(density, pattern, valid, geometry: Geometry,
                   max_dark: float = 0.0):
  """Min-max normalised pattern with the grid-fitted dark level (at most
  ``max_dark``), its masked and paper-protocol losses:
  ``(sim [M, M], masked, paper, u)``."""
  sim, ml, pl, u = batch_losses(
      jnp.asarray(density, jnp.float32)[None],
      jnp.asarray(pattern, jnp.float32)[None], jnp.asarray(valid)[None],
      geometry, float(max_dark))
  return np.asarray(sim[0]), float(ml[0]), float(pl[0]), float(u[0])


def check_patterns(pattern, valid, m: int):
  """Validate pattern(s) ``[M, M]`` or ``[B, M, M]`` (finite, in [0, 1]) and
  their valid mask (``None``: all valid; one ``[M, M]`` mask broadcasts);
  returns ``(pattern [B, M, M] float32, valid [B, M, M] bool, single)``,
  the pattern as the network sees it (:func:`msftnet.augment.network_input`).
  Bad input raises ValueError in one sentence."""
  pattern = jnp.asarray(pattern, jnp.float32)
  single = pattern.ndim == 2
  if single:
    pattern = pattern[None]
  if pattern.ndim != 3 or pattern.shape[1:] != (m, m):
    raise ValueError(f"reconstruct: patterns must be [{m}, {m}] or "
                     f"[B, {m}, {m}], got shape {tuple(pattern.shape)}.")
  if not bool(jnp.all(jnp.isfinite(pattern))):
    raise ValueError("reconstruct: the pattern contains NaN or infinite "
                     "values, expected finite numbers in [0, 1].")
  lo, hi = float(jnp.min(pattern)), float(jnp.max(pattern))
  if lo < 0 or hi > 1:
    raise ValueError(f"reconstruct: pattern values span [{lo:.4g}, {hi:.4g}], "
                     "expected a normalised log pattern in [0, 1] (photon "
                     "counts: msftnet.measured.prepare_pattern).")
  if valid is None:
    valid = jnp.ones(pattern.shape, bool)
  else:
    valid = jnp.asarray(valid, bool)
    if valid.ndim == 2 and valid.shape == pattern.shape[1:]:
      valid = jnp.broadcast_to(valid, pattern.shape)
    if valid.shape != pattern.shape:
      raise ValueError(f"reconstruct: the valid mask has shape "
                       f"{tuple(valid.shape)}, expected {tuple(pattern.shape)}.")
  empty = ~jnp.any(valid, axis=(-2, -1))
  if bool(jnp.any(empty)):
    raise ValueError(f"reconstruct: the valid mask of pattern(s) "
                     f"{np.flatnonzero(np.asarray(empty)).tolist()} leaves no "
                     "pixel, expected at least one valid pixel.")
  flat = jnp.where(valid, pattern, jnp.nan)
  spread = (jnp.nanmax(flat, axis=(-2, -1)) - jnp.nanmin(flat, axis=(-2, -1)))
  if bool(jnp.any(spread == 0)):
    raise ValueError(f"reconstruct: pattern(s) "
                     f"{np.flatnonzero(np.asarray(spread == 0)).tolist()} are "
                     "constant inside the valid pixels, expected a "
                     "scattering pattern.")
  return augment.network_input(pattern, valid), valid, single


#: Fewest valid pixels in the coarse problem's central crop; with fewer (a
#: beam stop over the centre) :func:`coarse_problem` gives the full one.
COARSE_MIN_VALID = 16


def coarse_problem(pattern, valid, geometry: Geometry):
  """The coarse stage's geometry (N/2 voxels, the central M/2 pixels on the
  same q grid) and the pattern's central crop with its valid pixels; where
  fewer than :data:`COARSE_MIN_VALID` of those are valid, the full problem
  ``(geometry, pattern, valid)`` instead (the masked pixels are not
  data)."""
  m = geometry.detector_px
  coarse = geometry.replace(n_voxels=max(geometry.n_voxels // 2, 4),
                            detector_px=m // 2)
  o = m // 2 - (m // 2) // 2
  crop_valid = valid[o:o + m // 2, o:o + m // 2]
  if np.sum(crop_valid) < COARSE_MIN_VALID:
    return geometry, pattern, valid
  return coarse, pattern[o:o + m // 2, o:o + m // 2], crop_valid
