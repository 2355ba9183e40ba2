"""One measured pattern -> the particle's 3D density: the pipeline.

``reconstruct(patterns, valid)`` runs, per pattern: a search for the
pattern's centre (:mod:`msftnet.centre`; the pattern is moved so that q = 0
sits on pixel ``M // 2``), the trained network (the paper's reconstruction,
sections IV-V), and a refinement of the shape against the input with the same
differentiable MSFT, inside the detector's valid pixels: the method
``config.method`` of :mod:`msftnet.refine` (``"polytope"`` by default,
``"voxels"``; the methods, the model of the measurement and the ranking
live there).

Losses are reported both as the masked mean (the refinement's objective) and
in the paper's protocol (``msftnet.metrics.pattern_mse``: mean over *all*
pixels, zero difference outside the valid region).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from msftnet import centre
from msftnet import metrics
from msftnet import polytope as convex
from msftnet import refine as refine_lib
from msftnet.geometry import Geometry
from msftnet.refine import measurement as meas
from msftnet.refine import trust
from msftnet.refine import voxels
from msftnet.refine.base import RefineConfig

__all__ = ["RefineConfig", "Reconstruction", "reconstruct", "refine",
           "network_geometry"]


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
  centre_offset: np.ndarray    # [B, 2] float, fitted sub-pixel correction
  # The ranked candidates; where the patterns of a batch have different
  # numbers of them (two bodies, a second round), the shorter lists are
  # padded with empty ones: zero density, NaN loss, name "".
  candidate_density: np.ndarray  # [B, C, N, N, N] ranked candidates
  candidate_loss: np.ndarray   # [B, C] their objective, ascending
  candidate_name: np.ndarray   # [B, C] str, their starts
  confidence: np.ndarray       # [B] P(the shape is right), refine.trust
  confidence_reasons: np.ndarray  # [B] object: list of sentences against it
  signals: np.ndarray          # [B] object: dict, refine.trust.signals
  shape: np.ndarray            # [B] object: shape_net.ShapeEstimate or None


#: What pads a pattern's candidate list in a batch (see Reconstruction).
_NO_CANDIDATE = {"candidate_density": 0.0, "candidate_loss": np.nan,
                 "candidate_name": ""}


def _stack(rows: list[dict]) -> Reconstruction:
  """Per-pattern dicts (leading axis 1) -> one batched Reconstruction; the
  candidate lists padded to the longest (:data:`_NO_CANDIDATE`)."""
  c = max(np.asarray(r["candidate_loss"]).shape[1] for r in rows)
  for r in rows:
    for k, fill in _NO_CANDIDATE.items():
      x = np.asarray(r[k])
      if x.shape[1] < c:
        pad = np.full((1, c - x.shape[1]) + x.shape[2:], fill, dtype=x.dtype)
        r[k] = np.concatenate([x, pad], axis=1)
  out = {}
  for k in Reconstruction._fields:
    axis = 1 if k == "history" else 0
    out[k] = np.concatenate([np.asarray(r[k]) for r in rows], axis=axis)
  return Reconstruction(**out)


def _first(out: Reconstruction) -> Reconstruction:
  """The single pattern of a batch of one (``history`` is ``[steps, B]``)."""
  return Reconstruction(**{k: v[:, 0] if k == "history" else v[0]
                           for k, v in out._asdict().items()})


def _best_centre(first: dict, others: list[dict]) -> dict:
  """Of one pattern's rows refined at several centres (``first`` at the
  centre search's), the one whose answer leaves the smallest fraction of
  the pattern's variance unexplained; its reasons say what was tried."""
  if not others:
    return first
  rows = [first] + others
  frac = [r["signals"][0]["unexplained_fraction"] for r in rows]
  order = np.argsort(frac, kind="stable")
  best, second = rows[int(order[0])], rows[int(order[1])]
  tried = ", ".join(f"({r['centre_shift'][0][0]}, {r['centre_shift'][0][1]})"
                    for r in rows)
  sig = best["signals"][0]
  sig["centres_tried"] = len(rows)
  # How ambiguous the centre is: the next centre's fit, how much worse it
  # explains the pattern and how alike its shape is.
  sig["centre_margin"] = float(frac[int(order[1])] - frac[int(order[0])])
  sig["centre_agreement"] = (
      metrics.aligned_iou(best["density"][0], second["density"][0])
      if not (trust.is_empty(best["density"][0], 1)[0]
              or trust.is_empty(second["density"][0], 1)[0]) else 0.0)
  best["confidence"] = np.asarray([trust.confidence(sig)])
  if sig["centre_agreement"] < trust.CENTRE_DISAGREEMENT:
    best["confidence_reasons"][0] = best["confidence_reasons"][0] + [
        f"the fit at the next-best centre "
        f"({second['centre_shift'][0][0]}, {second['centre_shift'][0][1]}) "
        f"px gives another shape (aligned IoU "
        f"{sig['centre_agreement']:.2f}), explaining "
        f"{sig['centre_margin']:.1%} less of the pattern's variance"]
  if best is not first:
    best["confidence_reasons"][0] = best["confidence_reasons"][0] + [
        f"the pattern's centre is uncertain: of the centres {tried} px the "
        f"fit at ({best['centre_shift'][0][0]}, "
        f"{best['centre_shift'][0][1]}) explains the pattern best "
        f"({min(frac):.0%} of its variance unexplained, {frac[0]:.0%} at "
        "the centre search's)"]
  return best


def _other_centres(pattern, valid, search: centre.CentreSearch, i: int,
                   shift, confidence: float, config: RefineConfig
                   ) -> list[tuple[int, int]]:
  """The centres besides ``shift`` (the centre search's) at which pattern
  ``i`` is refined again: every other candidate
  (:func:`msftnet.centre.centre_candidates`) below
  ``config.centre_retry_below``; otherwise, with ``config.centre_check``,
  those of the two scores the default search combines (the rings' and the
  point symmetry's alone, from ``search``; a score that could not be taken
  offers none) that are distinct from ``shift`` and from each other
  (:func:`msftnet.centre.distinct`). None for a pattern that could not be
  searched."""
  if not config.centre_search or not search.searched[i]:
    return []
  if confidence < config.centre_retry_below:
    return [c for c in centre.centre_candidates(
        pattern, valid, k=config.centre_candidates,
        max_shift=config.centre_search, radius=config.centre_radius,
        rings=config.centre_rings) if c != tuple(shift)]
  if not config.centre_check:
    return []
  searches = []
  if search.ring_found[i]:
    searches.append(tuple(int(x) for x in search.ring[i]))
  if config.centre_rings:
    searches.append(tuple(int(x) for x in search.symmetry[i]))
  out = []
  for c in searches:
    if centre.distinct(c, [tuple(shift)] + out):
      out.append(c)
  return out


def _two_bodies(one_body: dict, two: dict) -> dict:
  """Of one pattern's one-body row and its two-body row (same centre), the
  two-body one where it explains the pattern clearly better
  (:func:`msftnet.refine.trust.two_bodies_better`); either way the
  one-body row's signals record what the two bodies left unexplained."""
  sig1, sig2 = one_body["signals"][0], two["signals"][0]
  sig1["two_body_unexplained"] = sig2["unexplained_fraction"]
  if not trust.two_bodies_better(sig1, sig2):
    return one_body
  # What the row says beyond its signals (a calibration note) stays.
  notes = [r for r in two["confidence_reasons"][0]
           if r not in trust.reasons(sig2)]
  # The centres' margin and agreement compare one-body fits, which this
  # answer explains the pattern better than: only the count carries over.
  if "centres_tried" in sig1:
    sig2["centres_tried"] = sig1["centres_tried"]
  sig2["bodies"] = 2
  sig2["one_body_unexplained"] = sig1["unexplained_fraction"]
  two["confidence"] = np.asarray([trust.confidence(sig2)])
  two["confidence_reasons"][0] = trust.reasons(sig2) + [
      f"two touching bodies explain the pattern better than one convex "
      f"body ({sig2['unexplained_fraction']:.1%} of its variance "
      f"unexplained against {sig1['unexplained_fraction']:.1%}): a "
      "non-convex particle (an agglomerate, an L); the confidence was "
      "calibrated on one-body answers"] + notes + [
          r for r in one_body["confidence_reasons"][0]
          if r.startswith("the pattern's centre is uncertain")]
  return two


def _trust(row: dict, pattern, valid, geometry: Geometry,
           network_masked: float, max_dark: float,
           centre_searched: bool | None = None, bodies=None,
           centre_at_edge: bool | None = None) -> dict:
  """The confidence fields of one pattern's row (centred frame); the dark
  level of the objective at most ``max_dark``; ``centre_searched``: whether
  the centre search could score any candidate (None: no search asked
  for); ``centre_at_edge``: whether the centre lies on the edge of the
  search's window (None: no search); ``bodies``: ``[B, N, N, N]`` the
  answer's bodies where it is a
  union of touching bodies, whose own depths along the beam are recorded
  (``body_depth_log_ratios``) beside the union's, which the deep-body rule
  reads: the bodies' separation along the beam is as weakly constrained
  by one pattern as a body's depth (docs/results.md, "Each body's
  depth")."""
  density = np.asarray(row["density"])[0]
  cands = np.asarray(row["candidate_density"])[0]
  _, objective = meas.affine_objective(
      jnp.asarray(density, jnp.float32)[None],
      jnp.asarray(pattern, jnp.float32)[None], jnp.asarray(valid)[None],
      geometry, max_dark)
  sig = trust.signals(
      density, pattern, valid, geometry, objective=float(objective[0]),
      dark_level=float(np.asarray(row["dark_level"])[0]),
      masked=float(np.asarray(row["loss_after"])[0]),
      network_masked=network_masked,
      agreement=(metrics.aligned_iou(cands[0], cands[1])
                 if len(cands) > 1 and not trust.is_empty(cands[1], 1)[0]
                 else None))
  if centre_searched is not None:
    sig["centre_searched"] = centre_searched
  if centre_at_edge is not None:
    sig["centre_at_edge"] = centre_at_edge
  if bodies is not None:
    sig["body_depth_log_ratios"] = [
        float(convex.depth_log_ratio(b > 0.5)) for b in bodies]
  reasons = np.empty(1, dtype=object)
  reasons[0] = trust.reasons(sig)
  signals = np.empty(1, dtype=object)
  signals[0] = sig
  return dict(confidence=np.asarray([trust.confidence(sig)]),
              confidence_reasons=reasons, signals=signals)


def refine(init_density, pattern, valid=None, *, geometry: Geometry,
           config: RefineConfig = RefineConfig()) -> Reconstruction:
  """Refine given densities against patterns by their voxels
  (:func:`msftnet.refine.voxels.refine_voxels`), without a network.

  Args:
    init_density: ``[B, N, N, N]`` (or ``[N, N, N]``) starting densities.
    pattern: ``[B, M, M]`` (or ``[M, M]``) normalised log patterns in [0, 1].
    valid: optional bool mask, same shape or ``[M, M]``; default all valid.
    geometry: the MSFT geometry.
    config: :class:`RefineConfig` (its voxel fields).

  Each pattern is refined on its own (the same compiled function for every
  pattern), so a pattern's result does not depend on the batch it came in.
  """
  pattern, valid, single = meas.check_patterns(pattern, valid,
                                               geometry.detector_px)
  init = jnp.asarray(init_density, jnp.float32)
  if init.ndim == 3:
    init = init[None]
  n = geometry.n_voxels
  if init.shape != (pattern.shape[0], n, n, n):
    raise ValueError(f"refine: init_density must be [{pattern.shape[0]}, {n}, "
                     f"{n}, {n}], got {tuple(init.shape)}.")
  rows = []
  for i in range(pattern.shape[0]):
    one = voxels.refine_voxels(init[i:i + 1], pattern[i:i + 1],
                               valid[i:i + 1], geometry=geometry,
                               config=config)
    one = {k: np.asarray(v) for k, v in one.items()}
    name = voxels.start_label(int(one["start"][0]), config)
    one.update(start_name=np.asarray([name], dtype=object),
               centre_shift=np.zeros((1, 2), np.int64),
               centre_offset=np.zeros((1, 2)),
               candidate_density=one["density"][:, None],
               candidate_loss=one["loss_after"][:, None],
               candidate_name=np.asarray([[name]], dtype=object))
    one.update(_trust(one, np.asarray(pattern[i]), np.asarray(valid[i]),
                      geometry, float(one["network_loss"][0]),
                      config.max_dark))
    one["confidence_reasons"][0] = one["confidence_reasons"][0] + [
        trust.calibration_note("voxels", config.steps)]
    one["shape"] = np.full(1, None, dtype=object)
    rows.append(one)
  out = _stack(rows)
  return _first(out) if single else out


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


def _photons(photons, b: int, single: bool, config: RefineConfig) -> list:
  """``photons`` of :func:`reconstruct` as one entry per pattern (None
  where the objective does not use them); ValueError in one sentence when
  the Poisson objective lacks a pattern's counts."""
  if config.objective != "poisson" or config.steps == 0:
    return [None] * b
  if photons is not None and single and np.ndim(photons) == 1:
    photons = [photons]
  if photons is None or len(photons) != b:
    raise ValueError(
        f"reconstruct: the Poisson objective needs the photon counts of each "
        f"of the {b} pattern(s) (photons=[(log_lo, log_hi, dark), ...], "
        f"msftnet.measured.photons_of), got "
        f"{'none' if photons is None else len(photons)}.")
  return [meas.check_photons(ph, f"reconstruct: pattern {i}")
          for i, ph in enumerate(photons)]


#: Patterns per call of the network and its losses in :func:`reconstruct`.
_NETWORK_CHUNK = 32

def reconstruct(pattern, valid=None, *, model=None, refine_steps: int | None
                = None, config: RefineConfig = RefineConfig(),
                geometry: Geometry | None = None,
                shape_model="default", photons=None) -> Reconstruction:
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
    shape_model: what each pattern shows, read by the shape network
      (:mod:`msftnet.shape_net`: classes, size, stretch, orientation, in
      ``Reconstruction.shape``): ``"default"`` (the bundled one), a
      :class:`~msftnet.shape_net.ShapeModel` or its directory, or None
      (not read). With a refinement (``config.steps > 0``) the network
      reads the refined answer's noise-free pattern
      (:func:`msftnet.shape_net.predict_fit`; ``source`` "fitted answer"),
      its reading of the pattern itself kept as ``pattern_reading``; the
      network alone reads the pattern.
    photons: for ``config.objective == "poisson"`` (else not used): per
      pattern, ``(log_lo, log_hi, dark)`` of the photon counts behind it
      (:func:`msftnet.measured.photons_of` of its info; one tuple for a
      single pattern, a sequence of ``B`` for a batch).

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
  pat, val, single = meas.check_patterns(pattern, valid,
                                         geometry.detector_px)
  pat, val = np.asarray(pat), np.asarray(val)
  photons = _photons(photons, pat.shape[0], single, config)
  search = None
  shifts = np.zeros((pat.shape[0], 2), np.int64)
  if config.centre_search:
    search = centre.search_centres(pat, val, max_shift=config.centre_search,
                                   radius=config.centre_radius,
                                   rings=config.centre_rings)
    shifts = search.shift
  # (A searched centre keeps the valid pixels it was scored on, and an
  # unsearched pattern's shift is (0, 0): every centred pattern has some.)
  centred = [centre.shift_pattern(p, v, s) for p, v, s in zip(pat, val, shifts)]
  p_all = np.stack([c[0] for c in centred]).astype(np.float32)
  v_all = np.stack([c[1] for c in centred])
  shapes = [None] * pat.shape[0]
  from msftnet import shape_net
  if shape_model is not None:
    if isinstance(shape_model, str):
      shape_model = shape_net.load(None if shape_model == "default"
                                   else shape_model)
    elif not isinstance(shape_model, shape_net.ShapeModel):
      shape_model = shape_net.load(shape_model)
    if shape_model.geometry.detector_px != geometry.detector_px:
      raise ValueError(
          "reconstruct: the shape model reads "
          f"{shape_model.geometry.detector_px} px patterns, these have "
          f"{geometry.detector_px}.")
    shapes = shape_net.predict(p_all, v_all, shape_model)
  support = voxels.support_mask(geometry.n_voxels, config.support_radius)
  # The network and its losses: in chunks for the network alone; one
  # pattern per call before a refinement, so that a refined result does not
  # depend on the other patterns of the batch (the same compiled programs
  # for every pattern: bit-identical to a single call).
  chunk = _NETWORK_CHUNK if config.steps == 0 else 1
  first = {}
  for lo in range(0, pat.shape[0], chunk):
    sl = slice(lo, lo + chunk)
    net = model(p_all[sl]) * support
    parts = meas.batch_losses(net, jnp.asarray(p_all[sl]),
                              jnp.asarray(v_all[sl]), geometry,
                              config.max_dark)
    for k, x in zip(("net", "sim", "ml", "pl", "u"), (net,) + parts):
      first.setdefault(k, []).append(np.asarray(x))
  first = {k: np.concatenate(x) for k, x in first.items()}

  def one(i, p_c, v_c, shift, net, sim_n, ml_n, pl_n, u_n,
          bodies_from=None) -> dict:
    """The row of pattern ``i`` refined in the frame centred at ``shift``;
    with ``bodies_from`` (one-body candidates ``[C, N, N, N]``) two touching
    bodies refined instead."""
    row = dict(initial_density=net[None], initial_pattern=sim_n[None],
               centre_offset=np.zeros((1, 2)),
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
    else:
      if bodies_from is None:
        res = refine_lib.get(config.method)(net, p_c, v_c, geometry, config,
                                            ml_n, hint=shapes[i],
                                            photons=photons[i])
      else:
        res = refine_lib.polytope.refine_two_bodies(
            bodies_from, p_c, v_c, geometry, config, ml_n,
            photons=photons[i])
      row.update(density=res.density[:1], pattern=res.pattern[None],
                 loss_after=np.asarray([res.masked]),
                 paper_loss_after=np.asarray([res.paper]),
                 dark_level=np.asarray([res.dark_level]),
                 start=np.asarray([res.start]),
                 history=res.history[:, None],
                 start_name=np.asarray(res.names[:1], dtype=object),
                 candidate_density=res.density[None],
                 candidate_loss=res.loss[None],
                 candidate_name=np.asarray([res.names], dtype=object),
                 centre_offset=np.asarray([res.centre_offset]))
      if res.initial_density is not None:
        row.update(initial_density=res.initial_density[None],
                   loss_before=np.asarray([res.loss_before]),
                   paper_loss_before=np.asarray([res.paper_loss_before]))
    row.update(_trust(row, p_c, v_c, geometry, ml_n, config.max_dark,
                      None if search is None else bool(search.searched[i]),
                      bodies=(None if config.steps == 0 or bodies_from is None
                              else res.bodies),
                      centre_at_edge=(
                          None if search is None else
                          max(abs(shift[0]), abs(shift[1]))
                          >= config.centre_search)))
    note = trust.calibration_note(config.method, config.steps,
                                  config.objective)
    if note:
      row["confidence_reasons"][0] = row["confidence_reasons"][0] + [note]
    back = (-shift[0], -shift[1])
    # The answer's own simulated pattern, centred and whole, for the shape
    # network's reading of it (not a Reconstruction field).
    row["fit_pattern"] = row["pattern"][0]
    row["pattern"] = centre.shift_pattern(row["pattern"][0], None, back)[0][None]
    row["initial_pattern"] = centre.shift_pattern(
        row["initial_pattern"][0], None, back)[0][None]
    row["centre_shift"] = np.asarray([shift], np.int64)
    row["shape"] = np.empty(1, dtype=object)
    row["shape"][0] = shapes[i]
    return row

  def at_centre(i, shift, bodies_from=None) -> dict:
    """:func:`one` at another centre: the network and its losses again."""
    p_c, v_c = centre.shift_pattern(pat[i], val[i], shift)
    p_c = p_c.astype(np.float32)
    net = np.asarray(model(p_c[None]) * support)
    sim_n, ml_n, pl_n, u_n = (np.asarray(x) for x in meas.batch_losses(
        jnp.asarray(net), jnp.asarray(p_c)[None], jnp.asarray(v_c)[None],
        geometry, config.max_dark))
    return one(i, p_c, v_c, shift, net[0], sim_n[0], float(ml_n[0]),
               float(pl_n[0]), float(u_n[0]), bodies_from)

  rows = []
  for i in range(pat.shape[0]):
    shift = tuple(int(x) for x in shifts[i])
    row = one(i, p_all[i], v_all[i], shift, first["net"][i],
              first["sim"][i], *(float(first[k][i]) for k in ("ml", "pl",
                                                                 "u")))
    if config.centre_candidates > 1 and config.steps > 0:
      row = _best_centre(row, [at_centre(i, c) for c in
                               _other_centres(pat[i], val[i], search, i,
                                              shift, row["confidence"][0],
                                              config)])
    # (RefineConfig turns two_bodies off for the voxel method.)
    if (config.two_bodies and config.steps > 0
        and trust.two_bodies_worth_trying(row["signals"][0],
                                          float(row["confidence"][0]),
                                          config.centre_retry_below)):
      row = _two_bodies(row, at_centre(
          i, tuple(int(x) for x in row["centre_shift"][0]),
          bodies_from=row["candidate_density"][0]))
    if shapes[i] is not None and config.steps > 0:
      # What the refined answer is: the network reads its noise-free
      # pattern, free of the measurement's artefacts (docs/results.md, "The
      # class of the fitted answer"); the pattern's own reading rides along.
      # (Its pattern at its dark level is the refinement's own simulated
      # one: shape_net.predict_fit without the MSFT again.)
      fit = shape_net.predict_simulated(row["fit_pattern"][None],
                                        shape_model)[0]
      seen = shapes[i]
      at = tuple(int(x) for x in row["centre_shift"][0])
      if at != shift:                 # the pattern read at the chosen centre
        seen = shape_net.predict(*(x[None] for x in centre.shift_pattern(
            pat[i], val[i], at)), shape_model)[0]
      row["shape"][0] = dataclasses.replace(fit, pattern_reading=seen)
    rows.append(row)
  out = _stack(rows)
  return _first(out) if single else out
