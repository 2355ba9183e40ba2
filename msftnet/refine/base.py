"""What every refinement method shares: its settings, its result, the registry.

A method is a function ``refine_one(network_density [N, N, N], pattern
[M, M], valid [M, M], geometry, config, network_masked, hint=None,
photons=None) -> Refined`` (one centred pattern; ``network_masked`` is the
network prediction's masked loss; ``hint`` the shape network's
:class:`msftnet.shape_net.ShapeEstimate` of it, or None; ``photons`` the
pattern's counts as ``(log_lo, log_hi, dark)``, or None), registered under
a name with :func:`register`; ``RefineConfig.method`` chooses it
(:func:`get`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from msftnet import polytope as convex

__all__ = ["RefineConfig", "Refined", "METHODS", "OBJECTIVES", "register",
           "get"]

#: name -> ``refine_one`` of every registered method.
METHODS: dict[str, Callable] = {}


def register(name: str):
  """Decorator: register ``refine_one`` as method ``name``."""
  def wrap(fn):
    METHODS[name] = fn
    return fn
  return wrap


def get(name: str) -> Callable:
  """The ``refine_one`` of method ``name`` (ValueError naming the known)."""
  if name not in METHODS:
    raise ValueError(f"Refinement method {name!r} is unknown, expected one "
                     f"of {sorted(METHODS)}.")
  return METHODS[name]


#: What a refinement may fit (``RefineConfig.objective``).
OBJECTIVES = ("affine_log", "poisson")


@dataclasses.dataclass(frozen=True)
class RefineConfig:
  """Refinement settings (hashable: a static argument of the jitted step).

  Attributes:
    method: a registered method (:data:`METHODS`): ``"polytope"`` (default:
      convex polytopes with free planes, :mod:`msftnet.refine.polytope`) or
      ``"voxels"`` (free voxel logits with support, shrink-wrap, TV and
      binary priors, :mod:`msftnet.refine.voxels`).
    steps: Adam iterations of the final (full-resolution) stage; 0: the
      network alone. The default (50) is the polytope refinement's; the
      voxel refinement was measured with 100-150 (pass ``steps=100``).
    learning_rate: (voxels) Adam step on the logits and on ``u``.
    binary_weight: (voxels) weight of eq. 4.
    tv_weight: (voxels) weight of the total variation prior.
      The defaults (binary 1.0, TV 0.2, shrink-wrap threshold 0.3) were
      chosen on simulated-experiment test-set patterns of a seed used for
      no reported evaluation (docs/results.md, "The voxel refinement's
      settings"): with noisy data the true particle's masked loss is
      *higher* than that of over-fitted densities, so the priors must carry
      weight.
    support_radius: radius of the support ball, in box units (0.49).
    logit_clip: (voxels) the network's densities are clipped to
      ``[sigmoid(-c), sigmoid(c)]`` before taking logits.
    start: (voxels) ``"auto"``, ``"network"`` or ``"sphere"``.
    sphere_radii: (voxels) radii (box units) of the sphere starts.
    shrinkwrap_every: (voxels) every this many steps the support becomes the
      voxels where the density blurred by a Gaussian (sigma 1 voxel) exceeds
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
    centre_radius, centre_rings: that search's pair radius (px) and whether
      it weighs the rings' score too (:func:`msftnet.centre.centre_scores`;
      default 20 and True; why: docs/results.md, "The centre from symmetry
      and rings"); 40 and False: the former symmetry search.
    profile: (polytope) how boundary voxels are filled
      (:func:`msftnet.polytope.polytope_density`): ``"ramp"`` (the
      rasteriser's linear ramp) or ``"box"`` (the exact volume fraction of
      the voxel inside its face; docs/results.md compares them).
    fit_centre: (polytope) also fit a sub-pixel correction of the pattern's
      centre (up to ``msftnet.refine.polytope.MAX_CENTRE_PX``) after the
      integer centre search, the simulated pattern resampled bilinearly.
      The candidates are then still ranked and reported (losses, simulated
      pattern) without the correction, which ``Refined.centre_offset``
      gives.
    centre_rate: (polytope) its Adam learning rate (px).
    box_last: (polytope) refined candidates that touch the box rank after
      those that do not (:func:`msftnet.refine.trust.rank_candidates`).
    mask_erosion: (polytope) the refinement's objective leaves out the
      valid pixels within this many pixels of an invalid one (not of the
      detector's edge); the candidates are scored on every valid pixel.
    shape_band: (polytope) > 1: the sphere starts come from one radius band,
      ``[r / shape_band, r * shape_band]`` around the shape network's radius
      ``r`` (``hint``), instead of ``radius_bands`` (fewer starts, a faster
      coarse stage), where the best sphere of the scan lies in that band
      too; 0: off, and without a hint or where the best sphere disagrees
      ``radius_bands`` are used. Default 1.3 since the sixth session of
      2026-12-07 (docs/results.md, "Speed against accuracy": the same
      accuracy on two held-out seeds, up to 40 % less time).
    max_dark: (both, and the losses every result reports) the highest
      dark level ``u`` (``eps = max(I) 10^u``) the fits may reach, log10 of
      the simulated pattern's peak; 0 lets the background equal the peak.
    depth_prior: (polytope) > 0: the weight of a penalty on bodies deeper
      along the beam than the generator's solids
      (:func:`msftnet.refine.polytope.depth_penalty`), added to every
      start's objective; 0: off.
    recentre: (polytope) translate every body back to the box centre after
      each step (:func:`msftnet.refine.polytope.refine_polytopes`): the
      pattern does not see the body's position, so it may otherwise drift
      into a face of the box and be cut there.
    centre_candidates: (both) > 1: a result whose confidence is below
      ``centre_retry_below`` is refined again at up to
      this many candidate centres in all
      (:func:`msftnet.centre.centre_candidates`), and the fit that leaves
      the smallest fraction of the pattern's variance unexplained is kept
      (default 4; why: docs/results.md, "The centre, chosen by the fit");
      1: the centre search's centre only.
    centre_check: (both, with ``centre_candidates > 1``) a result whose
      confidence is not low is refined again at the centres of the two
      searches the default one combines (the rings',
      :func:`msftnet.centre.ring_centre`, and the point symmetry's alone)
      where they lie 2 px or more from the chosen one, and the fit that
      leaves the smallest fraction of the pattern's variance unexplained
      is kept: each search fails on some patterns (a blind spot's rim or
      strong noise break the point symmetry; sharp anisotropic fringes
      bias the rings; why: docs/results.md, "The centre from symmetry and
      rings").
    objective: (polytope) what the refinement fits:
      ``"affine_log"`` (default: :func:`msftnet.refine.measurement.affine_masked_mse`
      of the log pattern, any scale and offset) or ``"poisson"`` (the
      Poisson deviance of the photon counts,
      :func:`msftnet.refine.measurement.poisson_deviance`; only for inputs
      read as counts, whose ``photons`` the caller passes). The candidates'
      ``loss`` and the ``history`` are the objective's; the masked and
      paper losses, the dark level and the trust signals are the log
      pattern's either way.
    centre_retry_below: the confidence below which ``centre_candidates``
      applies (default 0.5, :data:`msftnet.refine.trust.LOW_CONFIDENCE`;
      1: every result); also ``two_bodies``.
    two_bodies: (polytope) a result whose confidence is below
      ``centre_retry_below``, or that leaves structured residuals
      (:func:`msftnet.refine.trust.structured_residual`: what a particle
      that is not one convex body leaves), and more than twice the noise
      unexplained (:func:`msftnet.refine.trust.two_bodies_worth_trying`),
      is refined again as two bodies
      (:func:`msftnet.refine.polytope.refine_two_bodies`, started from the
      separation the pattern's autocorrelation reads), and that answer is
      kept where it explains the pattern clearly better
      (:func:`msftnet.refine.trust.two_bodies_better`): for agglomerates
      and other non-convex particles. Default since the seventh session of
      2026-12-07 (docs/results.md, "Two touching bodies": non-convex
      median aligned IoU 0.37 -> 0.60 on a held-out seed, convex results
      unchanged or better); ``False``: one convex body always. Off for
      ``method="voxels"``, which represents any shape.
  """

  method: str = "polytope"
  steps: int = 50
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
  coarse_steps: int = 75
  keep: int = 2
  radius_bands: tuple[tuple[float, float], ...] = ((0.04, 0.11), (0.11, 0.22),
                                                   (0.22, 0.45))
  centre_search: int = 10
  centre_radius: int = 20
  centre_rings: bool = True
  profile: str = "ramp"
  fit_centre: bool = False
  centre_rate: float = 0.02
  box_last: bool = False
  mask_erosion: int = 0
  shape_band: float = 1.3
  max_dark: float = 0.0
  depth_prior: float = 0.0
  recentre: bool = False
  centre_candidates: int = 4
  centre_retry_below: float = 0.5
  centre_check: bool = True
  objective: str = "affine_log"
  two_bodies: bool = True

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"RefineConfig.method must be one of "
                       f"{' or '.join(sorted(METHODS))}, got {self.method!r}.")
    if self.planes < 4 or self.keep < 1 or self.coarse_steps < 0:
      raise ValueError("RefineConfig: planes must be >= 4, keep >= 1 and "
                       "coarse_steps >= 0.")
    if self.start not in ("auto", "network", "sphere"):
      raise ValueError(f"RefineConfig.start must be auto, network or sphere, "
                       f"got {self.start!r}.")
    if self.steps < 0:
      raise ValueError(f"RefineConfig.steps must be >= 0, got {self.steps}.")
    if self.shape_band and not self.shape_band > 1:
      raise ValueError(f"RefineConfig.shape_band must be 0 (off) or > 1, "
                       f"got {self.shape_band}.")
    if not 0.0 <= self.centre_retry_below <= 1.0:
      raise ValueError(f"RefineConfig.centre_retry_below must lie in [0, 1], "
                       f"got {self.centre_retry_below}.")
    if self.centre_radius < 2:
      raise ValueError(f"RefineConfig.centre_radius must be >= 2 px, got "
                       f"{self.centre_radius}.")
    if self.centre_candidates < 1:
      raise ValueError(f"RefineConfig.centre_candidates must be >= 1, got "
                       f"{self.centre_candidates}.")
    if not self.depth_prior >= 0.0:
      raise ValueError(f"RefineConfig.depth_prior must be >= 0 (0: off), "
                       f"got {self.depth_prior}.")
    if not -8.0 <= self.max_dark <= 0.0:
      raise ValueError(f"RefineConfig.max_dark must lie in [-8, 0] (log10 "
                       f"of the peak), got {self.max_dark}.")
    if self.objective not in OBJECTIVES:
      raise ValueError(f"RefineConfig.objective must be one of "
                       f"{' or '.join(OBJECTIVES)}, got {self.objective!r}.")
    if self.objective == "poisson" and self.method != "polytope":
      raise ValueError("RefineConfig.objective='poisson' is for the polytope "
                       f"refinement, got method {self.method!r}.")
    if self.two_bodies and self.method != "polytope":
      # The voxel refinement represents any shape: no second body to add
      # (recorded as off, so that a result's config says what ran).
      object.__setattr__(self, "two_bodies", False)
    if self.profile not in convex.PROFILES:
      raise ValueError(f"RefineConfig.profile must be one of "
                       f"{convex.PROFILES}, got {self.profile!r}.")


@dataclasses.dataclass(frozen=True)
class Refined:
  """One pattern's refinement (numpy), as every method returns it.

  Attributes:
    density: ``[C, N, N, N]`` the candidates, ranked (the first is the answer).
    loss: ``[C]`` their objective, in rank order.
    names: the candidates' starts (``C`` strings).
    history: ``[steps]`` the winner's objective per step.
    pattern: ``[M, M]`` the winner's simulated pattern (centred frame).
    masked, paper: the winner's masked and paper-protocol losses.
    dark_level: the winner's fitted dark level ``u`` (``eps = max(I) 10^u``).
    start: index of the winning start (voxels: 0 network, k sphere k).
    centre_offset: the fitted sub-pixel centre correction ``(dy, dx)`` px
      (``RefineConfig.fit_centre``; zero otherwise), beyond the integer
      centre search.
    initial_density, loss_before, paper_loss_before: the winner's start and
      its losses where it is not the network's prediction (None: it is).
    bodies: ``[B, N, N, N]`` the winner's bodies, each on its own, where
      it is a union of ``B`` bodies (None: one body, or voxels).
  """

  density: np.ndarray
  loss: np.ndarray
  names: tuple[str, ...]
  history: np.ndarray
  pattern: np.ndarray
  masked: float
  paper: float
  dark_level: float
  start: int = 0
  centre_offset: tuple[float, float] = (0.0, 0.0)
  initial_density: np.ndarray | None = None
  loss_before: float | None = None
  paper_loss_before: float | None = None
  bodies: np.ndarray | None = None
