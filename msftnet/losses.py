"""Losses of Stielow & Scheel (2021): physics-informed, supervised, hybrid.

All take densities ``[B, N, N, N]`` (or ``[B, N, N, N, 1]``) in [0, 1] and
return scalars (means over the batch).

* :func:`scatter_loss` (eq. 3): mean squared difference of the normalised log
  MSFT patterns ``log(|E|^2 + eps)`` of prediction and target
  (``eps = geometry.loss_eps``: 100 on the paper's 64^3 grid, scaled with the
  voxel size on others). The target's
  pattern may come from the batch (the pipeline already simulated it), so only
  the prediction's MSFT is differentiated.
* :func:`binary_loss` (eq. 4): ``mean p^2 (1 - p)^2``, pushing voxels to 0/1.
* :func:`physics_loss`: ``scatter + 0.1 binary`` (the paper's training loss).
* :func:`bce_loss`: voxel-wise binary cross-entropy (the paper's supervised
  comparison), :func:`hybrid_loss` a weighted sum of both.
* :func:`masked_pattern_loss`: the prediction's pattern against the *input*
  pattern inside its valid-pixel mask (self-consistency for experimental data
  and refinement); pixels outside the mask have no influence.

The losses that compare a simulated pattern with a measured one (masked,
paper protocol, affine-invariant) live with the model of the measurement,
:mod:`msftnet.refine.measurement`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from msftnet.geometry import Geometry
from msftnet.msft import simulate_pattern
from msftnet.refine.measurement import masked_mse

__all__ = [
    "scatter_loss", "binary_loss", "physics_loss", "bce_loss", "hybrid_loss",
    "masked_pattern_loss", "iou",
]


def _squeeze(density):
  density = jnp.asarray(density)
  return density[..., 0] if density.ndim == 5 else density


def pattern_of(density, geometry: Geometry, eps=None):
  """Normalised log pattern ``[B, M, M]`` of densities ``[B, N, N, N(, 1)]``
  (``eps`` default: ``geometry.loss_eps``, the paper's 100 on its grid)."""
  eps = geometry.loss_eps if eps is None else eps
  return simulate_pattern(_squeeze(density), geometry, eps)


def scatter_loss(pred, geometry: Geometry, *, target=None, target_pattern=None,
                 eps=None) -> jax.Array:
  """Eq. 3: ``mean (P(pred) - P(target))^2`` over pixels and batch.

  Give either the target density or its pattern (``log_pattern`` of its
  intensity with the same ``eps``; not differentiated).
  """
  if target_pattern is None:
    if target is None:
      raise ValueError("scatter_loss needs target or target_pattern.")
    target_pattern = pattern_of(target, geometry, eps)
  target_pattern = jax.lax.stop_gradient(target_pattern)
  return jnp.mean((pattern_of(pred, geometry, eps) - target_pattern) ** 2)


def binary_loss(pred) -> jax.Array:
  """Eq. 4: ``mean p^2 (1 - p)^2``."""
  p = _squeeze(pred)
  return jnp.mean(p**2 * (1.0 - p) ** 2)


def physics_loss(pred, geometry: Geometry, *, target=None, target_pattern=None,
                 binary_weight: float = 0.1, eps=None) -> jax.Array:
  """The paper's training loss: ``scatter + binary_weight * binary``."""
  return (scatter_loss(pred, geometry, target=target,
                       target_pattern=target_pattern, eps=eps)
          + binary_weight * binary_loss(pred))


def bce_loss(pred, target, *, epsilon: float = 1e-6) -> jax.Array:
  """Voxel-wise binary cross-entropy (supervised training)."""
  p = jnp.clip(_squeeze(pred), epsilon, 1.0 - epsilon)
  t = _squeeze(target)
  return -jnp.mean(t * jnp.log(p) + (1.0 - t) * jnp.log1p(-p))


def hybrid_loss(pred, target, geometry: Geometry, *, target_pattern=None,
                physics_weight: float = 1.0, bce_weight: float = 1.0,
                binary_weight: float = 0.1, eps=None) -> jax.Array:
  """``physics_weight * physics + bce_weight * bce``."""
  return (physics_weight * physics_loss(
      pred, geometry, target=target, target_pattern=target_pattern,
      binary_weight=binary_weight, eps=eps)
          + bce_weight * bce_loss(pred, target))


def masked_pattern_loss(pred, pattern, valid, geometry: Geometry, *,
                        eps=None) -> jax.Array:
  """Mean over valid pixels of ``(P(pred) - pattern)^2``, averaged over the batch.

  Args:
    pred: ``[B, N, N, N(, 1)]`` densities.
    pattern: ``[B, M, M]`` the (measured) input patterns in [0, 1].
    valid: ``[B, M, M]`` bool, pixels that carry information.
  """
  return jnp.mean(masked_mse(pattern_of(pred, geometry, eps), pattern, valid))


def iou(pred, target, threshold: float = 0.5) -> jax.Array:
  """Intersection over union of ``pred > t`` and ``target > t``, per sample [B]."""
  p = _squeeze(pred) > threshold
  t = _squeeze(target) > threshold
  axes = tuple(range(1, p.ndim))
  inter = jnp.sum(p & t, axis=axes)
  union = jnp.sum(p | t, axis=axes)
  return jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)
