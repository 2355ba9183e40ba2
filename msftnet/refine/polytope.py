"""Method ``"polytope"`` (default): convex polytopes refined coarse to fine.

The particle is a convex polytope with ``config.planes`` free planes
(:func:`msftnet.polytope.polytope_density`). The objective is the
affine-invariant masked loss
(:func:`msftnet.refine.measurement.affine_masked_mse`) of
``log(I + max(I) 10^u)``, with the dark level ``u`` refined. Coarse to fine:
the starts (:func:`polytope_starts`: the hull of the network's prediction
and, for the best sphere radius of each size band, a sphere, a prolate and
an oblate ellipsoid along the beam) are refined ``coarse_steps`` at ``N/2``
voxels against the central ``M/2`` pixels (same q grid, below that grid's
Nyquist limit), the best ``keep`` then ``steps`` at full resolution; the
lowest objective wins and all of them come back ranked (implausible ones,
smaller than a voxel or far worse in the reported loss, after every other:
:func:`msftnet.refine.trust.rank_candidates`; if all ``keep`` end far worse
than the network's prediction, the next plausible coarse candidates are
refined too). Why: the free-voxel refinement turned faceted particles into
rounded blobs (measured side by side in ``docs/results.md``); a convex body
with free faces cannot make haze, voids or blobs, and has few enough
parameters to be found from a single pattern.

* :func:`refine_polytopes`: Adam on the planes of several starts against
  one pattern (jitted);
* :func:`polytope_starts`: the starts of one pattern;
* :func:`refine_one`: the method (registered as ``"polytope"``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import ndimage

from msftnet import polytope as convex
from msftnet import raster
from msftnet.geometry import Geometry
from msftnet.msft import intensity
from msftnet.refine import base
from msftnet.refine import measurement as meas
from msftnet.refine import trust

__all__ = ["refine_polytopes", "polytope_starts", "refine_one"]


_RATES = (("h", 0.003), ("n", 0.02), ("u", 0.05))


def _log_intensity(rho, geometry, u):
  """``log(I + max(I) 10^u)`` per sample: ``[S, M, M]``."""
  inten = intensity(rho, geometry)
  peak = jnp.max(inten, axis=(-2, -1), keepdims=True)
  return jnp.log(inten + jnp.maximum(peak * 10.0 ** u[:, None, None], 1e-30))


def _scaled_adam(rates: dict) -> optax.GradientTransformation:
  """Adam with one learning rate per parameter group (a dict of floats)."""
  return optax.chain(
      optax.scale_by_adam(),
      optax.GradientTransformation(
          lambda params: optax.EmptyState(),
          lambda updates, state, params=None: (
              {k: -rates[k] * v for k, v in updates.items()}, state)))


#: Largest sub-pixel centre correction (px) the refinement may fit.
MAX_CENTRE_PX = 2.0


def _recentred(logs, c):
  """``logs [S, M, M]`` sampled at ``m - c`` (bilinear; ``c [S, 2]`` px,
  bounded by :data:`MAX_CENTRE_PX` through a tanh): the simulated pattern
  of a particle whose q = 0 falls ``c`` px from pixel ``M // 2``."""
  m = logs.shape[-1]
  yy, xx = jnp.meshgrid(jnp.arange(m, dtype=jnp.float32),
                        jnp.arange(m, dtype=jnp.float32), indexing="ij")
  c = MAX_CENTRE_PX * jnp.tanh(c / MAX_CENTRE_PX)

  def one(img, ci):
    return jax.scipy.ndimage.map_coordinates(
        img, [yy - ci[0], xx - ci[1]], order=1, mode="nearest")

  return jax.vmap(one)(logs, c)


def centre_offset(c) -> np.ndarray:
  """The fitted centre parameter ``c [..., 2]`` -> the offset in px."""
  return np.asarray(MAX_CENTRE_PX * np.tanh(np.asarray(c) / MAX_CENTRE_PX))


def body_density(normals, offsets, n: int, profile: str = "ramp"):
  """The density of each start: one polytope (``normals [S, K, 3]``,
  :func:`msftnet.polytope.polytope_density`) or a union of ``B`` touching
  bodies (``[S, B, K, 3]``, :func:`msftnet.polytope.bodies_density`)."""
  if jnp.ndim(normals) == 4:
    return convex.bodies_density(normals, offsets, n, profile)
  return convex.polytope_density(normals, offsets, n, profile)


@functools.partial(jax.jit, static_argnames=("geometry", "steps", "rates",
                                             "profile", "max_dark",
                                             "depth_prior", "recentre"))
def refine_polytopes(normals, offsets, pattern, valid, *, geometry: Geometry,
                     steps: int, rates: tuple = _RATES,
                     profile: str = "ramp", centre=None,
                     max_dark: float = 0.0, depth_prior: float = 0.0,
                     recentre: bool = False, photons=None,
                     dark_cap=None):
  """Adam on the planes of ``S`` polytopes against one pattern.

  Args:
    normals: ``[S, K, 3]``, offsets ``[S, K]``: the starts (box units);
      or ``[S, B, K, 3]`` and ``[S, B, K]``: each start a union of ``B``
      bodies (:func:`body_density`).
    pattern: ``[M, M]`` the measured log pattern (any affine scale);
      valid: ``[M, M]`` bool.
    geometry: the MSFT geometry (its ``n_voxels`` sets the grid).
    steps: Adam iterations.
    rates: learning rates of the offsets ``h`` (box units), the normals
      ``n`` and the dark level ``u``.
    profile: the voxel profile of :func:`msftnet.polytope.polytope_density`.
    centre: ``None``, or ``[S, 2]`` initial centre parameters: the pattern's
      centre is then fitted too, a sub-pixel offset of up to
      :data:`MAX_CENTRE_PX` (:func:`centre_offset`; ``rates`` must name
      ``"c"``).
    max_dark: the highest dark level ``u`` (log10 of the peak) searched
      and reached: ``u`` is clipped to it.
    depth_prior: > 0: the weight of :func:`depth_penalty` added to each
      start's objective (a body far deeper along the beam than across it).
    recentre: after every step, translate each body so that its centroid
      (at the step's start) sits at the box centre (its offsets shifted by
      ``-n.c``). A far-field pattern does not see where the body is (a
      shift is a phase), so the objective hardly changes (the voxels and
      the box faces aside), but without it
      a body may drift into a face of the box and be cut there.
    photons: ``None``, or ``(log_lo, log_hi, d)`` of a pattern of photon
      counts (:func:`msftnet.refine.measurement.counts_from_pattern`): the
      objective is then the Poisson deviance of those counts
      (:func:`msftnet.refine.measurement.poisson_deviance`) under
      ``lambda = a (I + max(I) 10^u)``, the scale ``a`` in closed form.
    dark_cap: with ``photons``, a further bound on ``u`` (a traced scalar:
      :func:`msftnet.refine.measurement.count_dark_bound` of the pattern's
      counts); None: ``max_dark`` alone.

  Otherwise the objective is :func:`msftnet.refine.measurement.affine_masked_mse` of
  ``log(I + max(I) 10^u)``, the dark level ``u`` per start initialised by a
  grid search over [-8, ``max_dark``].

  Returns:
    ``(params, loss [S], history [steps, S])`` with params ``{"n", "h", "u"}``
    (and ``"c"`` with ``centre``).
  """
  n = geometry.n_voxels
  s = offsets.shape[0]
  if recentre and jnp.ndim(normals) == 4:
    raise ValueError("refine_polytopes: recentre moves one body per start; "
                     f"these starts have {normals.shape[1]} bodies each.")
  pats = jnp.broadcast_to(pattern, (s,) + pattern.shape)
  vals = jnp.broadcast_to(valid, (s,) + valid.shape)
  u0, _ = meas.affine_dark_search(
      intensity(body_density(normals, offsets, n, profile),
                geometry),
      pats, vals, max_dark)
  counts = (None if photons is None
            else meas.counts_from_pattern(pats, photons))
  top = (max_dark if dark_cap is None or photons is None
         else jnp.minimum(max_dark, dark_cap))
  if photons is not None:
    # Started at or below the cap: above it the clip's gradient is 0 and
    # the dark level would never move.
    u0 = jnp.minimum(u0, top - 0.25)
  params = {"n": jnp.asarray(normals, jnp.float32),
            "h": jnp.asarray(offsets, jnp.float32), "u": u0}
  if centre is not None:
    params["c"] = jnp.asarray(centre, jnp.float32)
  tx = _scaled_adam(dict(rates))

  def per_start(p):
    rho = body_density(p["n"], p["h"], n, profile)
    logs = _log_intensity(rho, geometry, jnp.minimum(p["u"], top))
    if "c" in p:
      logs = _recentred(logs, p["c"])
    if counts is None:
      loss = meas.affine_masked_mse(logs, pats, vals)
    else:
      loss = meas.poisson_deviance(jnp.exp(logs), counts, vals)
    if depth_prior:
      loss = loss + depth_prior * depth_penalty(rho)
    return loss

  def step(carry, _):
    p, state = carry
    per, grads = jax.value_and_grad(
        lambda p: (jnp.sum(per_start(p)), per_start(p)), has_aux=True)(p)
    updates, state = tx.update(grads, state, p)
    new = optax.apply_updates(p, updates)
    if recentre:                 # the centroid of the step's bodies
      rho = convex.polytope_density(p["n"], p["h"], n, profile)
      shift = jnp.einsum("skd,sd->sk", convex.unit(new["n"]),
                         convex.centroid(rho))
      new = dict(new, h=new["h"] - shift)
    return (new, state), per[1]

  (params, _), history = jax.lax.scan(step, (params, tx.init(params)), None,
                                      length=steps)
  params["u"] = jnp.minimum(params["u"], top)
  return params, per_start(params), history


@functools.partial(jax.jit, static_argnames=("geometry", "max_dark"))
def _sphere_scan(radii, pattern, valid, *, geometry: Geometry,
                 max_dark: float = 0.0):
  """Affine-invariant loss of balls of ``radii`` (best dark level up to
  ``max_dark``): ``[R]``."""
  inten = intensity(raster.sphere_density(geometry.n_voxels, radii), geometry)
  return meas.affine_dark_search(inten, pattern, valid, max_dark)[1]


_SCAN_RADII = tuple(np.geomspace(0.04, 0.45, 24).tolist())
_START_SHAPES = (("sphere", (1.0, 1.0, 1.0)), ("prolate", (1.4, 0.85, 0.85)),
                 ("oblate", (0.7, 1.2, 1.2)))


def scan_spheres(pattern, valid, geometry: Geometry, max_dark: float
                 ) -> np.ndarray:
  """The affine-invariant loss of balls of each of ``_SCAN_RADII`` against
  the coarse problem (the central pixels), or, where too few of those are
  valid (a beam stop over the centre), the full problem: ``[R]``."""
  coarse, crop, crop_valid = meas.coarse_problem(pattern, valid, geometry)
  return np.asarray(_sphere_scan(jnp.asarray(_SCAN_RADII, jnp.float32),
                                 jnp.asarray(crop), jnp.asarray(crop_valid),
                                 geometry=coarse, max_dark=max_dark))


def polytope_starts(network_density, pattern, valid, geometry: Geometry,
                    config: base.RefineConfig, radius: float | None = None):
  """The starts of the polytope refinement for one (centred) pattern.

  The hull of the network's prediction (its support function along
  ``config.planes`` directions) and, for the best sphere radius of each of
  ``config.radius_bands`` (scanned on the coarse problem), a sphere and an
  ellipsoid elongated and one flattened along the beam. With
  ``config.shape_band`` and ``radius`` (box units, the shape network's),
  one band around ``radius`` replaces ``config.radius_bands``, where the
  best sphere of the scan lies in that band too.

  Returns ``(normals [S, K, 3], offsets [S, K], names [S])``.
  """
  dirs = convex.fibonacci_directions(config.planes)
  scan = scan_spheres(pattern, valid, geometry, config.max_dark)
  radii = np.asarray(_SCAN_RADII)
  offsets = [convex.support_offsets(
      convex.centre_density(np.asarray(network_density)), dirs)]
  names = ["network"]
  bands = config.radius_bands
  if config.shape_band and radius is not None:
    hinted = (radius / config.shape_band, radius * config.shape_band)
    best = float(radii[int(np.argmin(scan))])
    # Only where some scanned radius lies near the hint and the best
    # sphere agrees with it (the shape network's size can be wrong on a
    # measured pattern); otherwise the usual bands.
    if (((radii >= hinted[0]) & (radii < hinted[1])).any()
        and hinted[0] <= best < hinted[1]):
      bands = (hinted,)
  for lo, hi in bands:
    band = np.flatnonzero((radii >= lo) & (radii < hi))
    if not len(band):
      continue
    r = float(radii[band[np.argmin(scan[band])]])
    for shape, scale in _START_SHAPES:
      offsets.append(convex.ellipsoid_offsets(dirs, r, scale))
      names.append(f"{shape} r={r:.2f} box")
  offsets = np.stack(offsets)
  normals = np.broadcast_to(dirs, offsets.shape + (3,)).copy()
  return normals, offsets, names


#: :data:`msftnet.polytope.GENERATOR_DEPTH_Q99` rounded to 1.0: a body
#: deeper than that along the beam is penalised by :func:`depth_penalty`.
DEPTH_LIMIT = round(convex.GENERATOR_DEPTH_Q99, 1)


def depth_penalty(density):
  """``relu(depth_log_ratio - DEPTH_LIMIT)^2`` per body (``[..., N, N, N]``);
  0 for an empty one."""
  x = convex.depth_log_ratio(density)
  return jnp.square(jnp.maximum(x - DEPTH_LIMIT, 0.0))


def _objective_photons(pattern, valid, config: base.RefineConfig, photons):
  """``(photons, dark_cap)`` of the Poisson objective, or ``(None, None)``."""
  if config.objective != "poisson":
    return None, None
  photons = jnp.asarray(meas.check_photons(photons), jnp.float32)
  dark_cap = jnp.float32(meas.count_dark_bound(
      meas.counts_from_pattern(jnp.asarray(pattern), photons), valid))
  return photons, dark_cap


def _fit_mask(valid, config: base.RefineConfig) -> np.ndarray:
  """The pixels the refinement's objective fits (``config.mask_erosion``)."""
  fit_valid = np.asarray(valid, bool)
  if config.mask_erosion:
    # Pixels next to masked ones (edges of a beam stop, a gap, a blind
    # spot) are the least reliable: the objective leaves them out (the
    # candidates are still scored on every valid pixel).
    eroded = ndimage.binary_erosion(fit_valid, iterations=config.mask_erosion,
                                    border_value=1)
    fit_valid = eroded if eroded.sum() >= 16 else fit_valid
  return fit_valid


def _coarse_to_fine(normals, offsets, names, pattern, valid, fit_valid,
                    geometry: Geometry, config: base.RefineConfig,
                    network_masked: float, photons, dark_cap) -> base.Refined:
  """Every start refined on the coarse problem, the ``keep`` best at full
  resolution (one more round where all of them are implausible), ranked:
  the stages of :func:`refine_one` after its starts (one polytope or a
  union of bodies per start, :func:`body_density`)."""
  n = geometry.n_voxels
  coarse, crop, crop_valid = meas.coarse_problem(pattern, fit_valid, geometry)
  profile = config.profile
  # With fit_centre the centre correction is a parameter too, started at 0
  # and carried from the coarse stage to the fine one.
  rates = (_RATES + (("c", config.centre_rate),) if config.fit_centre
           else _RATES)
  pc, loss_c, _ = refine_polytopes(
      jnp.asarray(normals), jnp.asarray(offsets), jnp.asarray(crop),
      jnp.asarray(crop_valid), geometry=coarse, steps=config.coarse_steps,
      profile=profile, rates=rates, max_dark=config.max_dark,
      depth_prior=config.depth_prior, recentre=config.recentre,
      centre=(np.zeros((len(offsets), 2), np.float32) if config.fit_centre
              else None), photons=photons, dark_cap=dark_cap)
  loss_c = np.asarray(loss_c)

  def full(idx):
    p, loss, history = refine_polytopes(
        pc["n"][idx], pc["h"][idx], jnp.asarray(pattern),
        jnp.asarray(fit_valid), geometry=geometry, steps=config.steps,
        profile=profile, rates=rates, max_dark=config.max_dark,
        depth_prior=config.depth_prior, recentre=config.recentre,
        centre=pc["c"][idx] if config.fit_centre else None, photons=photons,
        dark_cap=dark_cap)
    dens = np.asarray(body_density(p["n"], p["h"], n, profile))
    # A union's bodies, each on its own (for the trust signals).
    parts = (np.asarray(convex.polytope_density(p["n"], p["h"], n, profile))
             if jnp.ndim(p["n"]) == 4 else np.zeros((len(idx), 0)))
    sim, masked, paper, u = zip(*(meas.pattern_losses(d, pattern, valid,
                                                      geometry,
                                                      config.max_dark)
                                  for d in dens))
    off = (centre_offset(p["c"]) if "c" in p
           else np.zeros((len(idx), 2), np.float32))
    return dict(idx=np.asarray(idx), loss=np.asarray(loss), off=off,
                history=np.asarray(history), dens=dens, parts=parts,
                sim=np.stack(sim),
                masked=np.asarray(masked), paper=np.asarray(paper),
                u=np.asarray(u))

  top = np.argsort(loss_c, kind="stable")[:config.keep]
  rounds = [full(top)]
  if (rounds[0]["masked"].min()
      > trust.IMPLAUSIBLE_LOSS_FACTOR * network_masked):
    dens_c = np.asarray(body_density(pc["n"], pc["h"], coarse.n_voxels,
                                     profile))
    masked_c = [meas.pattern_losses(d, crop, crop_valid, coarse,
                                    config.max_dark)[1]
                for d in dens_c]
    tried = set(top.tolist())
    more = [i for i in trust.rank_candidates(loss_c, dens_c, masked_c)
            if i not in tried][:len(top)]
    if more:                        # padded to the first round's shape
      more = np.asarray(more + more[-1:] * (len(top) - len(more)))
      extra = full(more)
      keep_new = np.unique(more, return_index=True)[1]
      rounds.append({k: (v[:, keep_new] if k == "history" else v[keep_new])
                     for k, v in extra.items()})
  cat = {k: np.concatenate([r[k] for r in rounds], axis=1 if k == "history"
                           else 0) for k in rounds[0]}
  order = trust.rank_candidates(cat["loss"], cat["dens"], cat["masked"],
                                box_last=config.box_last)
  best = order[0]
  return base.Refined(
      density=cat["dens"][order], loss=cat["loss"][order],
      names=tuple(names[cat["idx"][i]] for i in order),
      history=cat["history"][:, best], pattern=cat["sim"][best],
      masked=float(cat["masked"][best]), paper=float(cat["paper"][best]),
      dark_level=float(cat["u"][best]),
      centre_offset=tuple(float(x) for x in cat["off"][best]),
      bodies=cat["parts"][best] if cat["parts"].ndim > 2 else None)


@base.register("polytope")
def refine_one(network_density, pattern, valid, geometry: Geometry,
               config: base.RefineConfig, network_masked: float, hint=None,
               photons=None) -> base.Refined:
  """Coarse-to-fine polytope refinement of one centred pattern.

  With ``config.objective == "poisson"``, ``photons`` (``(log_lo, log_hi,
  d)`` of the pattern's counts, :func:`msftnet.measured.photons_of`) is
  required and both stages fit the counts' Poisson deviance
  (:func:`refine_polytopes`), which is then the candidates' ``loss`` and
  the ``history``; the sphere scan of the starts, the masked and paper
  losses and the dark level reported stay those of the log pattern.

  The ``keep`` best coarse candidates (by the objective) are
  refined at full resolution and scored with
  :func:`msftnet.refine.measurement.pattern_losses`. If every one of them
  ends far worse in the masked loss than the network's prediction
  (``network_masked``; more than :data:`trust.IMPLAUSIBLE_LOSS_FACTOR`
  times), the coarse candidates are ranked again with
  :func:`trust.rank_candidates` and the best plausible ones not yet refined
  are refined too (one more round, same compiled programs). All refined
  candidates come back ranked by :func:`trust.rank_candidates`.
  """
  photons, dark_cap = _objective_photons(pattern, valid, config, photons)
  fit_valid = _fit_mask(valid, config)
  radius = (None if hint is None else
            hint.radius_nm / geometry.box_nm)     # a ShapeEstimate
  normals, offsets, names = polytope_starts(network_density, pattern,
                                            fit_valid, geometry, config,
                                            radius)
  return _coarse_to_fine(normals, offsets, names, pattern, valid, fit_valid,
                         geometry, config, network_masked, photons, dark_cap)


def split_starts(densities, planes: int) -> tuple[np.ndarray, np.ndarray,
                                                   list[str]]:
  """Two-body starts from one-body answers: each density cut in two
  through its centroid across each of its three principal axes, each half
  the polytope circumscribing it (``planes`` directions), where it lies.

  Args:
    densities: ``[C, N, N, N]`` one-body candidates (e.g. a refinement's).
    planes: planes per body.

  Returns:
    ``(normals [S, 2, K, 3], offsets [S, 2, K], names [S])``; no starts
    (``S = 0``) from a candidate with fewer than 16 voxels inside, and no
    cut that leaves fewer than 8 on one side.
  """
  dirs = convex.fibonacci_directions(planes)
  offsets, names = [], []
  for c, rho in enumerate(np.asarray(densities)):
    inside = rho > 0.5
    pts = np.argwhere(inside)
    if len(pts) < 16:
      continue
    centred = pts - pts.mean(axis=0)
    _, axes = np.linalg.eigh(centred.T @ centred)
    for a, axis in zip(("long", "middle", "short"), axes.T[::-1]):
      side = (centred @ axis) > 0
      if min(side.sum(), (~side).sum()) < 8:     # a flat body's cut
        continue
      halves = []
      for part in (side, ~side):
        half = np.zeros_like(inside)
        half[tuple(pts[part].T)] = True
        halves.append(convex.support_offsets(half, dirs, centred=False))
      offsets.append(np.stack(halves))
      names.append(f"candidate {c + 1} cut across its {a} axis")
  k = len(dirs)
  if not offsets:
    return (np.zeros((0, 2, k, 3), np.float32), np.zeros((0, 2, k),
                                                        np.float32), [])
  offsets = np.stack(offsets)
  normals = np.broadcast_to(dirs, offsets.shape + (3,)).astype(np.float32)
  return normals, offsets, names


#: Two-body candidates refined at full resolution (at least; more where
#: ``config.keep`` says so): the coarse stage ranks two-body starts less
#: reliably than one-body ones (on tuning seed 31 a cube dimer's best start
#: ranked third).
TWO_BODY_KEEP = 3


def refine_two_bodies(densities, pattern, valid, geometry: Geometry,
                      config: base.RefineConfig, network_masked: float,
                      photons=None) -> base.Refined:
  """Refine two touching bodies against one centred pattern: the union of
  two polytopes (:func:`msftnet.polytope.bodies_density`, ``config.planes``
  planes each), through the same stages as :func:`refine_one`
  (``config``'s steps and objective; :data:`TWO_BODY_KEEP` candidates at
  full resolution).

  The starts: two touching balls (:func:`pair_starts`) whose separation
  across the beam the pattern's autocorrelation reads (its hidden pixels
  filled with the pattern of ``densities[0]``), of the radius read there,
  of half the volume of ``densities[0]`` and of the best sphere of the
  scan; and ``densities[0]`` cut in two across each principal axis
  (:func:`split_starts`; under a beam stop the autocorrelation misleads,
  the cut does not).

  Args:
    densities: ``[C, N, N, N]`` the one-body answer's candidates, best
      first.
    pattern, valid, geometry, config, network_masked, photons: as for
      :func:`refine_one`.

  For the non-convex particles a single convex body cannot explain (a
  dimer, an L): the caller compares the fits
  (:func:`msftnet.refine.trust.two_bodies_better`).
  """
  densities = np.asarray(densities)
  fit_valid = _fit_mask(valid, config)
  # Each ball: half the answer's volume, or the best sphere of the scan
  # (a dimer's envelope is one ball's pattern).
  scan = scan_spheres(pattern, fit_valid, geometry, config.max_dark)
  radii = (trust.equivalent_radius(densities[0]) / 2.0 ** (1.0 / 3.0),
           float(_SCAN_RADII[int(np.argmin(scan))]))
  sim, _, _, dark = meas.pattern_losses(densities[0], pattern, valid,
                                        geometry, config.max_dark)
  parts = [pair_starts(pattern, valid, radii, geometry, config.planes,
                       fill=sim, decades=max(-dark, 1.0))]
  parts.append(split_starts(densities[:1], config.planes))
  normals = np.concatenate([x[0] for x in parts])
  offsets = np.concatenate([x[1] for x in parts])
  names = [nm for x in parts for nm in x[2]]
  photons, dark_cap = _objective_photons(pattern, valid, config, photons)
  return _coarse_to_fine(normals, offsets, names, pattern, valid, fit_valid,
                         geometry, dataclasses.replace(
                             config, recentre=False, keep=max(config.keep,
                                                              TWO_BODY_KEEP)),
                         network_masked, photons, dark_cap)


def separation_across_beam(pattern, valid, geometry: Geometry, fill=None,
                           decades: float = 4.0
                           ) -> tuple[np.ndarray, float, float]:
  """How far apart, across the beam, the two halves of a particle lie, read
  off the pattern's autocorrelation.

  The inverse Fourier transform of the intensity is (near the centre of
  the detector, where the Ewald sphere is flat) the autocorrelation of the
  particle's projection along the beam, whose second moments are twice the
  projection's. For two equal bodies the projection's variance along their
  separation exceeds the variance across it by ``(d / 2)^2``; so
  ``d = 2 sqrt(var_along - var_across)``.

  Args:
    pattern: ``[M, M]`` normalised log pattern (1 at the peak), centred.
    valid: its valid pixels.
    geometry: its q grid: one pixel of the autocorrelation is
      ``2 pi / (M q_step)`` nm.
    fill: ``None`` (the invalid pixels count as no intensity), or a model's
      pattern ``[M, M]`` (e.g. a one-body answer's): the invalid pixels take
      its values, fitted to the valid ones by a scale and an offset (a beam
      stop hides the brightest pixels, which dominate the autocorrelation).
    decades: how many decades of intensity the pattern's [0, 1] spans
      (about minus the fitted dark level ``u``): the intensity is
      ``10^(decades (p - 1))``, and the moments scale with it, ``d`` as
      its square root.

  Returns:
    ``(direction [2] (y, x) unit vector, d, r)``, ``d`` and ``r`` in box
    units: ``r`` the radius of the ball whose projection has the variance
    across (``sqrt(5 var)``).
  """
  p = np.asarray(pattern, np.float64)
  v = np.asarray(valid, bool)
  if fill is not None and v.any() and not v.all():
    f = np.asarray(fill, np.float64)
    a, b = np.linalg.lstsq(np.stack([f[v], np.ones(v.sum())], 1), p[v],
                           rcond=None)[0]
    # Hidden pixels may be brighter than the brightest valid one.
    p = np.where(v, p, np.maximum(a * f + b, 0.0))
    v = np.ones_like(v)
  inten = np.where(v, 10.0 ** (decades * (p - 1.0)), 0.0)
  a = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(inten))))
  m = a.shape[0]
  s = np.arange(m) - m // 2
  sy, sx = np.meshgrid(s, s, indexing="ij")
  w = np.maximum(a - 0.02 * a.max(), 0.0) * (np.hypot(sy, sx) < m // 3)
  w = w / max(w.sum(), 1e-30)
  cov = np.array([[np.sum(w * sy * sy), np.sum(w * sy * sx)],
                  [np.sum(w * sy * sx), np.sum(w * sx * sx)]]) / 2.0
  lam, vec = np.linalg.eigh(cov)
  pixel = 2.0 * np.pi / (m * geometry.q_step_per_nm * geometry.box_nm)
  return (vec[:, 1], float(pixel * 2.0 * np.sqrt(max(lam[1] - lam[0], 0.0))),
          float(pixel * np.sqrt(5.0 * max(lam[0], 0.0))))


def pair_starts(pattern, valid, radii, geometry: Geometry, planes: int,
                fill=None, decades: float = 4.0
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Two-ball starts: for the radius the autocorrelation reads across the
  separation and each of ``radii`` (box units), two such balls
  touching, their separation across the beam from
  :func:`separation_across_beam` (``fill``, ``decades``: as there) and the
  rest of the balls' diameter along the beam, either way (none where the
  separation across exceeds it).

  Returns ``(normals [S, 2, K, 3], offsets [S, 2, K], names [S])``.
  """
  dirs = convex.fibonacci_directions(planes)
  (dy, dx), d, r_across = separation_across_beam(pattern, valid, geometry,
                                                 fill, decades)
  radii = (r_across,) + tuple(radii)
  offsets, names = [], []
  for r in radii:
    full = 2.0 * r             # touching; or further apart across
    across = d
    along = np.sqrt(max(full ** 2 - across ** 2, 0.0))
    ball = convex.ellipsoid_offsets(dirs, r)
    for sign in ((1.0, -1.0) if along > 0.25 * full else (1.0,)):
      half = 0.5 * np.array([sign * along, across * dy, across * dx])
      offsets.append(np.stack([ball + dirs @ half, ball - dirs @ half]))
      names.append(f"two balls r={r:.2f} box, {across:.2f} box apart "
                   f"across the beam, {sign * along:+.2f} along")
  offsets = np.stack(offsets).astype(np.float32)
  normals = np.broadcast_to(dirs, offsets.shape + (3,)).astype(np.float32)
  return normals, offsets, names
