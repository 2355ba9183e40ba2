"""One measured pattern -> the particle's 3D density: network, then refinement.

``reconstruct(patterns, valid)`` runs, per pattern: a search for the
pattern's centre (:mod:`msftnet.centre`; the pattern is moved so that q = 0
sits on pixel ``M // 2``), the trained network (the paper's reconstruction,
sections IV-V), and a refinement of the shape against the input with the same
differentiable MSFT, inside the detector's valid pixels.

Method ``"polytope"`` (default): the particle is a convex polytope with
``planes`` free planes (:mod:`msftnet.polytope`). Its objective is the
affine-invariant masked loss (:func:`msftnet.losses.affine_masked_mse`) of
``log(I + max(I) 10^u)``, with the dark level ``u`` refined. Coarse to fine:
the starts (:func:`polytope_starts`: the hull of the network's prediction and,
for the best sphere radius of each size band, a sphere, a prolate and an
oblate ellipsoid along the beam) are refined ``coarse_steps`` at ``N/2``
voxels against the central ``M/2`` pixels (same q grid, below that grid's
Nyquist limit), the best ``keep`` then ``steps`` at full resolution; the
lowest objective wins and all of them come back ranked (implausible ones,
smaller than a voxel or far worse in the reported loss, after every other:
:func:`rank_candidates`; if all ``keep`` end far worse than the network's
prediction, the next plausible coarse candidates are refined too). Why: the free-voxel
refinement below turned faceted particles into rounded blobs (measured side
by side in ``docs/results.md``); a convex body with free faces cannot make
haze, voids or blobs, and has few enough parameters to be found from a
single pattern.

Method ``"voxels"`` (the earlier default, kept for comparison):

* parameters: voxel logits ``[B, 64, 64, 64]`` (density ``sigmoid(logits)``,
  so it stays in [0, 1]) and one dark-level parameter per pattern ``u``: the
  simulated pattern is ``normalise(log(I + eps))`` with ``eps = max(I) 10^u``
  (a measured pattern's dark/background level relative to its peak is unknown;
  the training data draw it from ``msftnet.data.DARK_OFFSET_LOG10``). ``u`` is
  initialised by a grid search on the network's prediction;
* objective: the masked pattern loss (mean over valid pixels of the squared
  difference of normalised log patterns; pixels outside the mask have no
  influence) + ``binary_weight`` times the binary penalty (eq. 4, as in
  training) + ``tv_weight`` times the total variation of the density;
* priors, and why: (1) *support*: density outside a ball of radius 0.49 box
  (the largest circumradius of the training solids) is held at zero, so the
  object cannot spread to the box edges where the voxel grid aliases, and the
  pattern's missing phase cannot be traded for density far away;
  (2) *shrink-wrap* (Marchesini et al., PRB 68, 140101 (2003)): every
  ``shrinkwrap_every`` steps the support shrinks to where the blurred
  density exceeds a threshold; without it the refinement explains fine
  details of the pattern with a faint, unphysical haze of density around
  the particle (seen on barke5.png); (3) *total variation* (smoothed isotropic |grad rho|): it penalises surface
  area, so among densities that explain the valid pixels the refinement
  prefers compact, solid bodies without speckle or voids inside (the particles
  are single crystals or twinned crystals, i.e. solid); (4) *binary* (eq. 4):
  the material is either there or not;
* starting points (``RefineConfig.start``): ``"network"`` (default, the
  prediction), ``"sphere"`` (homogeneous spheres of ``sphere_radii``), or
  ``"auto"``: both; every start is refined (all in one batch) and, per
  pattern, the one with the lowest final objective is kept, reported in
  ``Reconstruction.start`` (0: network, k: the k-th sphere). Measured: a
  start far from the right size is a local minimum the refinement does not
  leave (a ball too large does not shrink to the particle). With a network
  that predicts a constant ball (the physics-only CPU run) ``"auto"``
  helped; with the bundled model it hurts (its objective, through the total
  variation, prefers spheres that are too small), hence the default
  (docs/results.md, "The voxel refinement's settings");
* optimiser: Adam (optax), ``steps`` iterations in one ``lax.scan`` under
  ``jax.jit``; the whole batch is refined at once.

Losses are reported both as the masked mean (the refinement's objective) and
in the paper's protocol (``msftnet.metrics.pattern_mse``: mean over *all*
pixels, zero difference outside the valid region).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from msftnet import augment
from msftnet import centre
from msftnet import losses
from msftnet import polytope
from msftnet.geometry import Geometry
from msftnet.msft import intensity
from msftnet.msft import log_pattern

__all__ = ["RefineConfig", "Reconstruction", "reconstruct", "refine",
           "network_geometry", "check_patterns",
           "polytope_starts", "pattern_losses", "coarse_problem",
           "support_mask", "fit_dark_level", "simulate_with_dark_level",
           "sphere_density", "start_label", "rank_candidates",
           "result_warning", "IMPLAUSIBLE_LOSS_FACTOR"]

_U_GRID = polytope.DARK_GRID


@dataclasses.dataclass(frozen=True)
class RefineConfig:
  """Refinement settings (hashable: a static argument of the jitted step).

  Attributes:
    method: ``"polytope"`` (default: convex polytopes with free planes,
      module docstring) or ``"voxels"`` (free voxel logits with support,
      shrink-wrap, TV and binary priors).
    steps: Adam iterations of the final (full-resolution) stage; 0: the
      network alone.
    learning_rate: (voxels) Adam step on the logits and on ``u``.
    binary_weight: weight of eq. 4.
    tv_weight: weight of the total variation prior.
      The defaults (binary 1.0, TV 0.2, shrink-wrap threshold 0.3) were
      chosen on simulated-experiment test-set patterns of a seed used for
      no reported evaluation (docs/results.md, "The voxel refinement's
      settings"): with noisy data the true particle's masked loss is
      *higher* than that of over-fitted densities, so the priors must carry
      weight.
    support_radius: radius of the support ball, in box units (0.49).
    logit_clip: the network's densities are clipped to
      ``[sigmoid(-c), sigmoid(c)]`` before taking logits.
    start: ``"auto"``, ``"network"`` or ``"sphere"`` (module docstring).
    sphere_radii: radii (box units) of the sphere starts.
    shrinkwrap_every: every this many steps the support becomes the voxels
      where the density blurred by a Gaussian (sigma 1 voxel) exceeds
      ``shrinkwrap_threshold`` (within the ball); 0 disables it.
    planes: (polytope) planes per polytope.
    coarse_steps: (polytope) Adam iterations of the coarse stage (N/2 voxels,
      the central M/2 pixels), where every start is refined.
    keep: (polytope) coarse candidates refined at full resolution.
    radius_bands: (polytope) sphere radii (box units) are scanned and the
      best radius of each band seeds three starts (sphere, prolate and oblate
      along the beam).
    centre_search: (both) largest offset (px) of the pattern centre searched
      by :func:`msftnet.centre.find_centre`; 0 trusts the pixel ``M // 2``.
    profile: (polytope) how boundary voxels are filled
      (:func:`msftnet.polytope.polytope_density`): ``"ramp"`` (the
      rasteriser's linear ramp) or ``"box"`` (the exact volume fraction of
      the voxel inside its face; docs/results.md compares them).
  """

  method: str = "polytope"
  steps: int = 100
  learning_rate: float = 0.1
  binary_weight: float = 1.0
  tv_weight: float = 0.2
  support_radius: float = 0.49
  logit_clip: float = 4.0
  start: str = "network"
  sphere_radii: tuple[float, ...] = (0.1, 0.17, 0.24, 0.31)
  shrinkwrap_every: int = 20
  shrinkwrap_threshold: float = 0.3
  planes: int = 48
  coarse_steps: int = 150
  keep: int = 2
  radius_bands: tuple[tuple[float, float], ...] = ((0.04, 0.11), (0.11, 0.22),
                                                   (0.22, 0.45))
  centre_search: int = 10
  profile: str = "ramp"

  def __post_init__(self):
    if self.method not in ("polytope", "voxels"):
      raise ValueError(f"RefineConfig.method must be polytope or voxels, got "
                       f"{self.method!r}.")
    if self.planes < 4 or self.keep < 1 or self.coarse_steps < 0:
      raise ValueError("RefineConfig: planes must be >= 4, keep >= 1 and "
                       "coarse_steps >= 0.")
    if self.start not in ("auto", "network", "sphere"):
      raise ValueError(f"RefineConfig.start must be auto, network or sphere, "
                       f"got {self.start!r}.")
    if self.steps < 0:
      raise ValueError(f"RefineConfig.steps must be >= 0, got {self.steps}.")
    if self.profile not in polytope.PROFILES:
      raise ValueError(f"RefineConfig.profile must be one of "
                       f"{polytope.PROFILES}, got {self.profile!r}.")


def _split_top_level(text: str) -> list[str]:
  """Split at commas outside parentheses and brackets."""
  parts, depth, cur = [], 0, ""
  for ch in text:
    depth += (ch in "([") - (ch in ")]")
    if ch == "," and depth == 0:
      parts.append(cur)
      cur = ""
    else:
      cur += ch
  return [p for p in parts + [cur] if p.strip()]


def parse_refine_config(text: str, base: RefineConfig = RefineConfig()
                        ) -> RefineConfig:
  """``"FIELD=VALUE,..."`` (Python literals) -> ``base`` with those fields.

  The form of the launchers' ``--refine`` flags, e.g. ``"keep=3,planes=48"``
  or ``"radius_bands=((0.04, 0.1), (0.1, 0.45))"``; a text field may be
  given bare (``profile=ramp``); an empty string gives ``base``.
  """
  changes = {}
  fields = {f.name for f in dataclasses.fields(RefineConfig)}
  for item in _split_top_level(text):
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or key not in fields:
      raise ValueError(f"Refinement setting {item.strip()!r}: expected "
                       f"FIELD=VALUE with FIELD one of {sorted(fields)}.")
    try:
      changes[key] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      if isinstance(getattr(base, key), str) and value.strip().isidentifier():
        changes[key] = value.strip()
        continue
      raise ValueError(f"Refinement setting {item.strip()!r}: the value is "
                       "not a Python literal (number, string, tuple).") from None
  for key, value in changes.items():
    want = type(getattr(base, key))
    if not (isinstance(value, want) or (want is float and
                                        type(value) is int)):
      raise ValueError(f"Refinement setting {key}={value!r}: expected type "
                       f"{want.__name__}.")
  return dataclasses.replace(base, **changes)


class Reconstruction(NamedTuple):
  """Output of :func:`reconstruct` / :func:`refine` (numpy, batched)."""

  density: np.ndarray          # [B, N, N, N] refined density in [0, 1]
  initial_density: np.ndarray  # [B, N, N, N] the starting point
  pattern: np.ndarray          # [B, M, M] simulated pattern of `density`
  initial_pattern: np.ndarray  # [B, M, M] simulated pattern of the start
  loss_before: np.ndarray      # [B] masked loss of the start
  loss_after: np.ndarray       # [B] masked loss after refinement
  paper_loss_before: np.ndarray  # [B] paper protocol (metrics.pattern_mse)
  paper_loss_after: np.ndarray   # [B]
  dark_level: np.ndarray       # [B] fitted u (eps = max(I) 10^u)
  start: np.ndarray            # [B] 0: network, k >= 1: sphere_radii[k-1]
  network_loss: np.ndarray     # [B] masked loss of the network's prediction
  network_paper_loss: np.ndarray  # [B] the same in the paper's protocol
  history: np.ndarray          # [steps, B] objective per step
  start_name: np.ndarray       # [B] str, the winning start
  centre_shift: np.ndarray     # [B, 2] int, pattern centre - M // 2 (px)
  candidate_density: np.ndarray  # [B, C, N, N, N] ranked candidates
  candidate_loss: np.ndarray   # [B, C] their objective, ascending
  candidate_name: np.ndarray   # [B, C] str, their starts


def support_mask(n: int, radius: float = 0.49) -> jax.Array:
  """``[N, N, N]`` float: 1 inside the ball ``|r| <= radius`` (box units)."""
  c = (jnp.arange(n, dtype=jnp.float32) - (n - 1) / 2) / n
  r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
  return (r2 <= radius**2).astype(jnp.float32)


def _log_with_dark(inten, u):
  """``normalise(log(I + max(I) 10^u))``; ``u`` broadcasts to ``[..., 1, 1]``."""
  peak = jnp.max(inten, axis=(-2, -1), keepdims=True)
  return log_pattern(inten, eps=jnp.maximum(peak * 10.0**u, 1e-30))


def simulate_with_dark_level(density, geometry: Geometry, u) -> jax.Array:
  """Normalised log pattern with ``eps = max(I) 10^u`` per sample: ``[B, M, M]``."""
  return _log_with_dark(intensity(density, geometry),
                        jnp.reshape(u, u.shape + (1, 1)))


def _dark_table(inten, pattern, valid):
  """Masked loss for every ``u`` of the grid: ``[U, ...]``."""
  return jax.lax.map(
      lambda u: losses.masked_mse(_log_with_dark(inten, u), pattern, valid),
      jnp.asarray(_U_GRID, jnp.float32))


def fit_dark_level(density, pattern, valid, geometry: Geometry
                   ) -> tuple[jax.Array, jax.Array]:
  """Grid search of ``u`` in [-8, 0] (33 values) per sample.

  Returns ``(u [B], masked loss at u [B])``.
  """
  table = _dark_table(intensity(density, geometry), pattern, valid)  # [U, B]
  i = jnp.argmin(table, axis=0)
  return (jnp.asarray(_U_GRID, jnp.float32)[i],
          jnp.take_along_axis(table, i[None], axis=0)[0])


def sphere_density(n: int, radius) -> jax.Array:
  """Anti-aliased ball(s) of ``radius`` (box units, scalar or [R]): ``[..., N, N, N]``."""
  c = (jnp.arange(n, dtype=jnp.float32) - (n - 1) / 2) / n
  r = jnp.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2
               + c[None, None, :] ** 2)
  radius = jnp.asarray(radius, jnp.float32)[..., None, None, None]
  return jnp.clip(0.5 - (r - radius) * n, 0.0, 1.0)


def start_label(index: int, config: RefineConfig = RefineConfig()) -> str:
  """``Reconstruction.start`` value -> ``"network"`` or ``"sphere r=0.17 box"``."""
  index = int(index)
  if index == 0:
    return "network"
  return f"sphere r={config.sphere_radii[index - 1]:g} box"


def _blur(rho):
  """Separable Gaussian blur, sigma 1 voxel (5 taps), on the last 3 axes."""
  w = jnp.exp(-0.5 * jnp.arange(-2.0, 3.0) ** 2)
  w = w / w.sum()
  for axis in (-3, -2, -1):
    pad = [(0, 0)] * rho.ndim
    pad[axis] = (2, 2)
    x = jnp.pad(rho, pad)
    n = rho.shape[axis]
    rho = sum(w[k] * jax.lax.slice_in_dim(x, k, k + n, axis=axis % rho.ndim)
              for k in range(5))
  return rho


def _tv(rho):
  dz = jnp.diff(rho, axis=-3)[..., :, :-1, :-1]
  dy = jnp.diff(rho, axis=-2)[..., :-1, :, :-1]
  dx = jnp.diff(rho, axis=-1)[..., :-1, :-1, :]
  return jnp.mean(jnp.sqrt(dz**2 + dy**2 + dx**2 + 1e-4), axis=(-3, -2, -1))


@functools.partial(jax.jit, static_argnames=("geometry", "config"))
def _refine(init_density, pattern, valid, *, geometry: Geometry,
            config: RefineConfig):
  n = geometry.n_voxels
  b = pattern.shape[0]
  support = support_mask(n, config.support_radius)
  c = config.logit_clip
  net = init_density * support
  u_net, _ = fit_dark_level(net, pattern, valid, geometry)
  # Starts [B, S, N, N, N]: the network's prediction and/or spheres.
  starts = []
  if config.start in ("auto", "network"):
    starts.append(net[:, None])
  if config.start in ("auto", "sphere"):
    balls = sphere_density(n, jnp.asarray(config.sphere_radii)) * support
    starts.append(jnp.broadcast_to(balls[None], (b,) + balls.shape))
  x0 = jnp.concatenate(starts, axis=1)
  s_count = x0.shape[1]
  x0 = x0.reshape((b * s_count, n, n, n))
  pats = jnp.repeat(pattern, s_count, axis=0)
  vals = jnp.repeat(valid, s_count, axis=0)
  u0, _ = fit_dark_level(x0, pats, vals, geometry)
  p0 = jnp.clip(x0, jax.nn.sigmoid(-c), jax.nn.sigmoid(c))
  params = {"logits": jnp.log(p0) - jnp.log1p(-p0), "u": u0}

  def density_of(p, supp):
    return jax.nn.sigmoid(p["logits"]) * supp

  def objective(p, supp):
    rho = density_of(p, supp)
    sim = simulate_with_dark_level(rho, geometry, p["u"])
    data = losses.masked_mse(sim, pats, vals)
    bin_ = jnp.mean(rho**2 * (1 - rho) ** 2, axis=(-3, -2, -1))
    per_start = (data + config.binary_weight * bin_
                 + config.tv_weight * _tv(rho))
    return jnp.sum(per_start), per_start

  tx = optax.adam(config.learning_rate)
  every = config.shrinkwrap_every

  def step(carry, i):
    p, s, supp = carry
    if every:
      wrapped = support * (_blur(density_of(p, supp))
                           > config.shrinkwrap_threshold)
      supp = jnp.where((i > 0) & (i % every == 0), wrapped, supp)
      supp = jax.lax.stop_gradient(supp)
    (_, per_start), grads = jax.value_and_grad(objective, has_aux=True)(
        p, supp)
    updates, s = tx.update(grads, s, p)
    return (optax.apply_updates(p, updates), s, supp), per_start

  supp0 = jnp.broadcast_to(support, x0.shape)
  (params, _, supp), history = jax.lax.scan(
      step, (params, tx.init(params), supp0), jnp.arange(config.steps))
  rho = density_of(params, supp) if config.steps else x0
  sim0 = simulate_with_dark_level(x0, geometry, u0)
  sim = simulate_with_dark_level(rho, geometry, params["u"])
  # Keep, per pattern, the start with the lowest final objective (data term
  # plus priors: with noisy data the data term alone favours over-fitting).
  final = losses.masked_mse(sim, pats, vals).reshape(b, s_count)
  if config.steps:
    _, total = objective(params, supp)
  else:
    total = final.reshape(-1)
  pick = jnp.argmin(total.reshape(b, s_count), axis=1)
  rows = jnp.arange(b) * s_count + pick
  sim_net = simulate_with_dark_level(net, geometry, u_net)
  history = history.reshape(config.steps, b, s_count)
  return dict(density=rho[rows], initial_density=x0[rows], pattern=sim[rows],
              initial_pattern=sim0[rows],
              loss_before=losses.masked_mse(sim0, pats, vals)[rows],
              loss_after=final[jnp.arange(b), pick],
              paper_loss_before=losses.paper_mse(sim0, pats, vals)[rows],
              paper_loss_after=losses.paper_mse(sim, pats, vals)[rows],
              dark_level=params["u"][rows],
              start=pick if config.start != "sphere" else pick + 1,
              network_loss=losses.masked_mse(sim_net, pattern, valid),
              network_paper_loss=losses.paper_mse(sim_net, pattern, valid),
              history=jnp.take_along_axis(history, pick[None, :, None],
                                          axis=2)[..., 0])


def check_patterns(pattern, valid, m: int):
  """Validate pattern(s) ``[M, M]`` or ``[B, M, M]`` (finite, in [0, 1]) and
  their valid mask (``None``: all valid; one ``[M, M]`` mask broadcasts);
  returns ``(pattern [B, M, M] float32, valid [B, M, M] bool, single)``.
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


def _with_fields(out: dict, b: int, names) -> dict:
  """Voxel refinement: the polytope-only fields, filled in."""
  out = dict(out)
  out["start_name"] = np.asarray(names, dtype=object)
  out["centre_shift"] = np.zeros((b, 2), np.int64)
  out["candidate_density"] = np.asarray(out["density"])[:, None]
  out["candidate_loss"] = np.asarray(out["loss_after"])[:, None]
  out["candidate_name"] = out["start_name"][:, None]
  return out


def _stack(rows: list[dict]) -> Reconstruction:
  """Per-pattern dicts (leading axis 1) -> one batched Reconstruction."""
  keys = Reconstruction._fields
  out = {}
  for k in keys:
    axis = 1 if k == "history" else 0
    out[k] = np.concatenate([np.asarray(r[k]) for r in rows], axis=axis)
  return Reconstruction(**out)


def refine(init_density, pattern, valid=None, *,
           geometry: Geometry | None = None,
           config: RefineConfig = RefineConfig()) -> Reconstruction:
  """Refine densities against patterns by their voxels (``method="voxels"``).

  Args:
    init_density: ``[B, N, N, N]`` (or ``[N, N, N]``) starting densities.
    pattern: ``[B, M, M]`` (or ``[M, M]``) normalised log patterns in [0, 1].
    valid: optional bool mask, same shape or ``[M, M]``; default all valid.
    geometry: the MSFT geometry (default ``Geometry()``: 64^3 -> 128^2).
    config: :class:`RefineConfig` (its voxel fields).

  Each pattern is refined on its own (the same compiled function for every
  pattern), so a pattern's result does not depend on the batch it came in.
  """
  geometry = Geometry() if geometry is None else geometry
  pattern, valid, single = check_patterns(pattern, valid, geometry.detector_px)
  init = jnp.asarray(init_density, jnp.float32)
  if init.ndim == 3:
    init = init[None]
  n = geometry.n_voxels
  if init.shape != (pattern.shape[0], n, n, n):
    raise ValueError(f"refine: init_density must be [{pattern.shape[0]}, {n}, "
                     f"{n}, {n}], got {tuple(init.shape)}.")
  rows = []
  for i in range(pattern.shape[0]):
    one = jax.device_get(_refine(init[i:i + 1], pattern[i:i + 1],
                                 valid[i:i + 1], geometry=geometry,
                                 config=config))
    start = int(np.asarray(one["start"])[0])
    rows.append(_with_fields(one, 1, [start_label(start, config)]))
  out = _stack(rows)
  return _first(out) if single else out


def _first(out: Reconstruction) -> Reconstruction:
  """The single pattern of a batch of one (``history`` is ``[steps, B]``)."""
  return Reconstruction(**{k: v[:, 0] if k == "history" else v[0]
                           for k, v in out._asdict().items()})


def coarse_problem(pattern, valid, geometry: Geometry):
  """The coarse stage's geometry (N/2 voxels, the central M/2 pixels on the
  same q grid) and the pattern's central crop."""
  m = geometry.detector_px
  coarse = geometry.replace(n_voxels=max(geometry.n_voxels // 2, 4),
                            detector_px=m // 2)
  o = m // 2 - (m // 2) // 2
  return coarse, pattern[o:o + m // 2, o:o + m // 2], valid[o:o + m // 2,
                                                            o:o + m // 2]


@functools.partial(jax.jit, static_argnames=("geometry",))
def _sphere_scan(radii, pattern, valid, *, geometry: Geometry):
  """Affine-invariant loss of balls of ``radii`` (best dark level): ``[R]``."""
  inten = intensity(sphere_density(geometry.n_voxels, radii), geometry)
  return polytope.affine_dark_search(inten, pattern, valid)[1]


_SCAN_RADII = tuple(np.geomspace(0.04, 0.45, 24).tolist())
_START_SHAPES = (("sphere", (1.0, 1.0, 1.0)), ("prolate", (1.4, 0.85, 0.85)),
                 ("oblate", (0.7, 1.2, 1.2)))


def polytope_starts(network_density, pattern, valid, geometry: Geometry,
                    config: RefineConfig = RefineConfig()):
  """The starts of the polytope refinement for one (centred) pattern.

  The hull of the network's prediction (its support function along
  ``config.planes`` directions) and, for the best sphere radius of each of
  ``config.radius_bands`` (scanned on the coarse problem), a sphere and an
  ellipsoid elongated and one flattened along the beam.

  Returns ``(normals [S, K, 3], offsets [S, K], names [S])``.
  """
  dirs = polytope.fibonacci_directions(config.planes)
  coarse, crop, crop_valid = coarse_problem(pattern, valid, geometry)
  if crop_valid.sum() < 16:            # nothing near the centre: use all
    crop_valid = np.ones_like(crop_valid)
  scan = np.asarray(_sphere_scan(jnp.asarray(_SCAN_RADII, jnp.float32),
                                 jnp.asarray(crop), jnp.asarray(crop_valid),
                                 geometry=coarse))
  radii = np.asarray(_SCAN_RADII)
  offsets = [polytope.support_offsets(
      polytope.centre_density(np.asarray(network_density)), dirs)]
  names = ["network"]
  for lo, hi in config.radius_bands:
    band = np.flatnonzero((radii >= lo) & (radii < hi))
    if not len(band):
      continue
    r = float(radii[band[np.argmin(scan[band])]])
    for shape, scale in _START_SHAPES:
      offsets.append(polytope.ellipsoid_offsets(dirs, r, scale))
      names.append(f"{shape} r={r:.2f} box")
  offsets = np.stack(offsets)
  normals = np.broadcast_to(dirs, offsets.shape + (3,)).copy()
  return normals, offsets, names


#: A refined candidate whose masked loss (paper normalisation, fitted dark
#: level) exceeds this many times the best candidate's is implausible.
IMPLAUSIBLE_LOSS_FACTOR = 3.0


def _empty(density, count: int) -> np.ndarray:
  """``[count]``: which of ``count`` volumes have no voxel above 0.5."""
  return np.asarray(density).reshape(count, -1).max(axis=1) <= 0.5


def result_warning(density, masked_loss: float,
                   network_masked_loss: float) -> str | None:
  """A sentence when a reconstruction ``density [N, N, N]`` should not be
  trusted, else None: it is empty (no voxel above 0.5), or its masked loss
  is over :data:`IMPLAUSIBLE_LOSS_FACTOR` times the network prediction's
  (the refinement made the explanation of the pattern worse, which
  :func:`rank_candidates` avoids when it can)."""
  if _empty(density, 1)[0]:
    return ("the reconstruction is empty (no voxel above 0.5): the pattern "
            "was not understood; check its scale, mask and centre.")
  if masked_loss > IMPLAUSIBLE_LOSS_FACTOR * network_masked_loss:
    return (f"the refined shape explains the pattern "
            f"{masked_loss / network_masked_loss:.1f} times worse than the "
            f"network's prediction (masked loss {masked_loss:.3g} against "
            f"{network_masked_loss:.3g}); do not trust it.")
  return None


def rank_candidates(loss, density, masked_loss=None,
                    factor: float = IMPLAUSIBLE_LOSS_FACTOR) -> np.ndarray:
  """The order of refined candidates: by objective ``loss [S]`` (the
  affine-invariant one), except that implausible candidates come after
  every other: a body with no voxel of ``density [S, N, N, N]`` above 0.5
  (smaller than a voxel), or one whose ``masked_loss [S]`` (the loss in the
  reported normalisation, :func:`pattern_losses`) exceeds ``factor`` times
  the lowest. Why: behind a beam stop the smooth pattern of a vanishing
  sphere can match a large particle's envelope under the affine-invariant
  objective better than the right shape does, while in the reported
  normalisation it is ten or more times worse; an empty volume is never an
  answer."""
  loss = np.asarray(loss)
  bad = _empty(density, len(loss))
  if masked_loss is not None:
    masked = np.asarray(masked_loss)
    bad |= masked > factor * masked.min()
  return np.lexsort((loss, bad))


def _polytope_one(network_density, pattern, valid, geometry: Geometry,
                  config: RefineConfig, network_masked: float) -> dict:
  """Coarse-to-fine polytope refinement of one centred pattern.

  The ``keep`` best coarse candidates (affine-invariant objective) are
  refined at full resolution and scored with :func:`pattern_losses`. If
  every one of them ends far worse in the masked loss than the network's
  prediction (``network_masked``; more than
  :data:`IMPLAUSIBLE_LOSS_FACTOR` times), the coarse candidates are ranked
  again with :func:`rank_candidates` and the best plausible ones not yet
  refined are refined too (one more round, same compiled programs). All
  refined candidates come back ranked by :func:`rank_candidates`, with the
  winner's ``sim``, ``masked``, ``paper`` and ``u`` of :func:`pattern_losses`.
  """
  n = geometry.n_voxels
  normals, offsets, names = polytope_starts(network_density, pattern, valid,
                                            geometry, config)
  coarse, crop, crop_valid = coarse_problem(pattern, valid, geometry)
  if crop_valid.sum() < 16:
    coarse, crop, crop_valid = geometry, pattern, valid
  profile = config.profile
  pc, loss_c, _ = polytope.refine_polytopes(
      jnp.asarray(normals), jnp.asarray(offsets), jnp.asarray(crop),
      jnp.asarray(crop_valid), geometry=coarse, steps=config.coarse_steps,
      profile=profile)
  loss_c = np.asarray(loss_c)

  def full(idx):
    p, loss, history = polytope.refine_polytopes(
        pc["n"][idx], pc["h"][idx], jnp.asarray(pattern), jnp.asarray(valid),
        geometry=geometry, steps=config.steps, profile=profile)
    dens = np.asarray(polytope.polytope_density(p["n"], p["h"], n, profile))
    sim, masked, paper, u = zip(*(pattern_losses(d, pattern, valid, geometry)
                                  for d in dens))
    return dict(idx=np.asarray(idx), loss=np.asarray(loss),
                history=np.asarray(history), dens=dens, sim=np.stack(sim),
                masked=np.asarray(masked), paper=np.asarray(paper),
                u=np.asarray(u))

  top = np.argsort(loss_c, kind="stable")[:config.keep]
  rounds = [full(top)]
  if rounds[0]["masked"].min() > IMPLAUSIBLE_LOSS_FACTOR * network_masked:
    dens_c = np.asarray(polytope.polytope_density(pc["n"], pc["h"],
                                                  coarse.n_voxels, profile))
    masked_c = [pattern_losses(d, crop, crop_valid, coarse)[1] for d in dens_c]
    tried = set(top.tolist())
    more = [i for i in rank_candidates(loss_c, dens_c, masked_c)
            if i not in tried][:len(top)]
    if more:                        # padded to the first round's shape
      more = np.asarray(more + more[-1:] * (len(top) - len(more)))
      extra = full(more)
      keep_new = np.unique(more, return_index=True)[1]
      rounds.append({k: (v[:, keep_new] if k == "history" else v[keep_new])
                     for k, v in extra.items()})
  cat = {k: np.concatenate([r[k] for r in rounds], axis=1 if k == "history"
                           else 0) for k in rounds[0]}
  order = rank_candidates(cat["loss"], cat["dens"], cat["masked"])
  return dict(density=cat["dens"][order], loss=cat["loss"][order],
              names=[names[cat["idx"][i]] for i in order],
              history=cat["history"][:, order[0]],
              **{k: cat[k][order[0]] for k in ("sim", "masked", "paper", "u")})


@functools.partial(jax.jit, static_argnames="geometry")
def _batch_losses(density, pattern, valid, geometry: Geometry):
  """:func:`pattern_losses` of a batch ``[B, N, N, N]``, one compiled call."""
  u, _ = fit_dark_level(density, pattern, valid, geometry)
  sim = simulate_with_dark_level(density, geometry, u)
  return (sim, losses.masked_mse(sim, pattern, valid),
          losses.paper_mse(sim, pattern, valid), u)


def pattern_losses(density, pattern, valid, geometry: Geometry):
  """Min-max normalised pattern with the grid-fitted dark level, its masked
  and paper-protocol losses: ``(sim [M, M], masked, paper, u)``."""
  sim, ml, pl, u = _batch_losses(
      jnp.asarray(density, jnp.float32)[None],
      jnp.asarray(pattern, jnp.float32)[None], jnp.asarray(valid)[None],
      geometry)
  return np.asarray(sim[0]), float(ml[0]), float(pl[0]), float(u[0])


def network_geometry(model, geometry: Geometry | None = None) -> Geometry:
  """The geometry of a reconstruction with ``model`` (a Predictor).

  ``None``: the model's own (``model.geometry``: the grid and physics it was
  trained on). Otherwise ``geometry``, whose grid (voxels, box, wavelength,
  detector pixels and q step) must be the model's: only the forward model,
  the material and the absorption may change; anything else raises
  ValueError in one sentence.
  """
  grid = model.geometry
  if geometry is None:
    return grid
  fields = ("n_voxels", "box_nm", "wavelength_nm", "detector_px",
            "q_step_per_nm")
  differ = [f for f in fields if getattr(geometry, f) != getattr(grid, f)]
  if differ:
    raise ValueError(
        "reconstruct: the network was trained on another geometry; this one "
        f"differs in {', '.join(differ)} (only the forward model, the "
        "material and the absorption may change).")
  return geometry


#: Patterns per call of the network and its losses in :func:`reconstruct`.
_NETWORK_CHUNK = 32


def reconstruct(pattern, valid=None, *, model=None, refine_steps: int | None
                = None, config: RefineConfig = RefineConfig(),
                geometry: Geometry | None = None) -> Reconstruction:
  """Pattern(s) ``[128, 128]`` or ``[B, 128, 128]`` -> ``Reconstruction``.

  Per pattern: find its centre (``config.centre_search``) and move it to
  pixel ``M // 2``; run the network; refine (``config.method``). With a
  refinement each pattern is processed on its own with the same compiled
  functions, so its result does not depend on the batch (bit for bit); the
  network alone (``refine_steps=0``) runs on chunks of up to 32 patterns,
  sharded over the local devices, and agrees with single calls to float32
  rounding.

  Args:
    pattern: normalised log pattern(s) in [0, 1] (``msftnet.measured``
      reads files).
    valid: optional valid-pixel mask (True = valid); pixels outside it are
      zeroed before the network and ignored by the refinement.
    model: a :class:`msftnet.pretrained.Predictor` or a model directory
      (default: the bundled model).
    refine_steps: overrides ``config.steps`` (0: the network alone).
    geometry: the physics of the refinement (forward model, material); its
      grid must be the network's. Default: the model's own
      (:func:`network_geometry`).

  Returns a :class:`Reconstruction`; ``pattern`` (simulated) is in the
  input's pixel frame, the losses are taken in the centred frame over the
  valid pixels that remain.
  """
  from msftnet import pretrained
  if model is None or isinstance(model, str):
    model = pretrained.load_model(model)
  if refine_steps is not None:
    if refine_steps < 0:
      raise ValueError(f"reconstruct: refine_steps must be >= 0, got "
                       f"{refine_steps}.")
    config = dataclasses.replace(config, steps=int(refine_steps))
  geometry = network_geometry(model, geometry)
  pat, val, single = check_patterns(pattern, valid, geometry.detector_px)
  pat, val = np.asarray(pat), np.asarray(val)
  shifts = (np.zeros((pat.shape[0], 2), np.int64) if not config.centre_search
            else centre.find_centres(pat, val, max_shift=config.centre_search))
  centred = [centre.shift_pattern(p, v, s) for p, v, s in zip(pat, val, shifts)]
  for i, (p_c, v_c) in enumerate(centred):
    if not v_c.any():                 # the shift left no valid pixel
      centred[i], shifts[i] = (pat[i], val[i]), (0, 0)
  p_all = np.stack([c[0] for c in centred]).astype(np.float32)
  v_all = np.stack([c[1] for c in centred])
  support = support_mask(geometry.n_voxels, config.support_radius)
  # The network and its losses: in chunks for the network alone; one
  # pattern per call before a refinement, so that a refined result does not
  # depend on the other patterns of the batch (the same compiled programs
  # for every pattern: bit-identical to a single call).
  chunk = _NETWORK_CHUNK if config.steps == 0 else 1
  first = {}
  for lo in range(0, pat.shape[0], chunk):
    sl = slice(lo, lo + chunk)
    net = model(p_all[sl]) * support
    parts = _batch_losses(net, jnp.asarray(p_all[sl]), jnp.asarray(v_all[sl]),
                          geometry)
    for k, x in zip(("net", "sim", "ml", "pl", "u"), (net,) + parts):
      first.setdefault(k, []).append(np.asarray(x))
  first = {k: np.concatenate(x) for k, x in first.items()}
  rows = []
  for i in range(pat.shape[0]):
    p_c, v_c = p_all[i], v_all[i]
    shift = tuple(int(x) for x in shifts[i])
    net, sim_n = first["net"][i], first["sim"][i]
    ml_n, pl_n, u_n = (float(first[k][i]) for k in ("ml", "pl", "u"))
    row = dict(initial_density=net[None], initial_pattern=sim_n[None],
               loss_before=np.asarray([ml_n]),
               paper_loss_before=np.asarray([pl_n]),
               network_loss=np.asarray([ml_n]),
               network_paper_loss=np.asarray([pl_n]))
    if config.steps == 0:
      row.update(density=net[None], pattern=sim_n[None],
                 loss_after=np.asarray([ml_n]),
                 paper_loss_after=np.asarray([pl_n]),
                 dark_level=np.asarray([u_n]),
                 start=np.asarray([0]), history=np.zeros((0, 1), np.float32),
                 start_name=np.asarray(["network"], dtype=object),
                 candidate_density=net[None, None],
                 candidate_loss=np.asarray([[ml_n]]),
                 candidate_name=np.asarray([["network"]], dtype=object))
    elif config.method == "voxels":
      one = refine(net[None], p_c[None], v_c[None], geometry=geometry,
                   config=config)._asdict()
      for k in ("density", "pattern", "loss_after", "paper_loss_after",
                "dark_level", "start", "history", "start_name",
                "candidate_density", "candidate_loss", "candidate_name"):
        row[k] = one[k]
      row["initial_density"] = one["initial_density"]
      row["loss_before"] = one["loss_before"]
      row["paper_loss_before"] = one["paper_loss_before"]
    else:
      res = _polytope_one(net, p_c, v_c, geometry, config, ml_n)
      sim, ml, pl, u = (res[k] for k in ("sim", "masked", "paper", "u"))
      row.update(density=res["density"][:1], pattern=sim[None],
                 loss_after=np.asarray([ml]),
                 paper_loss_after=np.asarray([pl]),
                 dark_level=np.asarray([u]), start=np.asarray([0]),
                 history=res["history"][:, None],
                 start_name=np.asarray(res["names"][:1], dtype=object),
                 candidate_density=res["density"][None],
                 candidate_loss=res["loss"][None],
                 candidate_name=np.asarray([res["names"]], dtype=object))
    back = (-shift[0], -shift[1])
    row["pattern"] = centre.shift_pattern(row["pattern"][0], None, back)[0][None]
    row["initial_pattern"] = centre.shift_pattern(
        row["initial_pattern"][0], None, back)[0][None]
    row["centre_shift"] = np.asarray([shift], np.int64)
    rows.append(row)
  out = _stack(rows)
  return _first(out) if single else out
