"""Method ``"voxels"``: free voxel logits with priors (the earlier default).

Kept for comparison with the polytope refinement (``docs/results.md``).

* parameters: voxel logits ``[B, N, N, N]`` (density ``sigmoid(logits)``,
  so it stays in [0, 1]) and one dark-level parameter per pattern ``u``: the
  simulated pattern is ``normalise(log(I + eps))`` with ``eps = max(I) 10^u``
  (:func:`msftnet.refine.measurement.simulate_with_dark_level`; a measured
  pattern's dark level relative to its peak is unknown; the training data
  draw it from ``msftnet.data.DARK_OFFSET_LOG10``). ``u`` is initialised by
  a grid search on the start;
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
  the particle (seen on barke5.png); (3) *total variation* (smoothed
  isotropic |grad rho|): it penalises surface area, so among densities that
  explain the valid pixels the refinement prefers compact, solid bodies
  without speckle or voids inside; (4) *binary* (eq. 4): the material is
  either there or not;
* starting points (``RefineConfig.start``): ``"network"`` (default, the
  prediction), ``"sphere"`` (homogeneous spheres of ``sphere_radii``), or
  ``"auto"``: both; every start is refined (all in one batch) and, per
  pattern, the one with the lowest final objective is kept (0: network, k:
  the k-th sphere). Measured: a start far from the right size is a local
  minimum the refinement does not leave; with the bundled model ``"auto"``
  hurts (its objective, through the total variation, prefers spheres that
  are too small), hence the default (docs/results.md, "The voxel
  refinement's settings");
* optimiser: Adam (optax), ``steps`` iterations in one ``lax.scan`` under
  ``jax.jit``.

* :func:`refine_voxels`: the jitted refinement of a batch;
* :func:`refine_one`: the method (registered as ``"voxels"``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from msftnet.geometry import Geometry
from msftnet.raster import sphere_density
from msftnet.refine import base
from msftnet.refine.measurement import fit_dark_level
from msftnet.refine.measurement import masked_mse
from msftnet.refine.measurement import paper_mse
from msftnet.refine.measurement import simulate_with_dark_level

__all__ = ["support_mask", "start_label", "refine_voxels", "refine_one"]


def support_mask(n: int, radius: float = 0.49) -> jax.Array:
  """``[N, N, N]`` float: 1 inside the ball ``|r| <= radius`` (box units)."""
  c = (jnp.arange(n, dtype=jnp.float32) - (n - 1) / 2) / n
  r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
  return (r2 <= radius**2).astype(jnp.float32)


def start_label(index: int, config: base.RefineConfig) -> str:
  """A voxel start's index -> ``"network"`` or ``"sphere r=0.17 box"``."""
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
def refine_voxels(init_density, pattern, valid, *, geometry: Geometry,
                  config: base.RefineConfig) -> dict:
  """Refine ``init_density [B, N, N, N]`` against ``pattern [B, M, M]``
  inside ``valid [B, M, M]`` (module docstring); per pattern the start with
  the lowest final objective. Returns a dict of ``[B, ...]`` arrays:
  ``density, initial_density, pattern, initial_pattern, loss_before,
  loss_after, paper_loss_before, paper_loss_after, dark_level, start,
  network_loss, network_paper_loss`` and ``history [steps, B]``."""
  n = geometry.n_voxels
  b = pattern.shape[0]
  support = support_mask(n, config.support_radius)
  c = config.logit_clip
  net = init_density * support
  u_net, _ = fit_dark_level(net, pattern, valid, geometry, config.max_dark)
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
  u0, _ = fit_dark_level(x0, pats, vals, geometry, config.max_dark)
  p0 = jnp.clip(x0, jax.nn.sigmoid(-c), jax.nn.sigmoid(c))
  params = {"logits": jnp.log(p0) - jnp.log1p(-p0), "u": u0}

  def density_of(p, supp):
    return jax.nn.sigmoid(p["logits"]) * supp

  def objective(p, supp):
    rho = density_of(p, supp)
    sim = simulate_with_dark_level(rho, geometry,
                                   jnp.minimum(p["u"], config.max_dark))
    data = masked_mse(sim, pats, vals)
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
  params["u"] = jnp.minimum(params["u"], config.max_dark)
  rho = density_of(params, supp) if config.steps else x0
  sim0 = simulate_with_dark_level(x0, geometry, u0)
  sim = simulate_with_dark_level(rho, geometry, params["u"])
  # Keep, per pattern, the start with the lowest final objective (data term
  # plus priors: with noisy data the data term alone favours over-fitting).
  final = masked_mse(sim, pats, vals).reshape(b, s_count)
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
              loss_before=masked_mse(sim0, pats, vals)[rows],
              loss_after=final[jnp.arange(b), pick],
              paper_loss_before=paper_mse(sim0, pats, vals)[rows],
              paper_loss_after=paper_mse(sim, pats, vals)[rows],
              dark_level=params["u"][rows],
              start=pick if config.start != "sphere" else pick + 1,
              network_loss=masked_mse(sim_net, pattern, valid),
              network_paper_loss=paper_mse(sim_net, pattern, valid),
              history=jnp.take_along_axis(history, pick[None, :, None],
                                          axis=2)[..., 0])


@base.register("voxels")
def refine_one(network_density, pattern, valid, geometry: Geometry,
               config: base.RefineConfig, network_masked: float, hint=None,
               photons=None) -> base.Refined:
  """The voxel refinement of one centred pattern (``network_masked`` is
  not used: every start is refined and the lowest objective kept; the
  voxels fit the log pattern, so ``photons`` is not used either)."""
  del network_masked, photons
  one = jax.device_get(refine_voxels(
      jnp.asarray(network_density, jnp.float32)[None],
      jnp.asarray(pattern, jnp.float32)[None], jnp.asarray(valid, bool)[None],
      geometry=geometry, config=config))
  start = int(np.asarray(one["start"])[0])
  density = np.asarray(one["density"])
  return base.Refined(
      density=density, loss=np.asarray(one["loss_after"]),
      names=(start_label(start, config),),
      history=np.asarray(one["history"])[:, 0],
      pattern=np.asarray(one["pattern"])[0],
      masked=one["loss_after"][0], paper=one["paper_loss_after"][0],
      dark_level=one["dark_level"][0], start=start,
      initial_density=np.asarray(one["initial_density"])[0],
      loss_before=one["loss_before"][0],
      paper_loss_before=one["paper_loss_before"][0])
