"""Agreement measures between patterns (numpy, for evaluation and reports).

* :func:`pearson_r`: correlation of two patterns, optionally inside a mask.
* :func:`best_offset_correlation`: the paper's stored patterns are
  ``normalise(log(I + c))`` with an unknown dark offset ``c`` per sample; this
  finds the ``c`` that maximises the correlation of our log pattern with a
  stored one (Pearson r is invariant under the min-max normalisation).
* :func:`iou` and :func:`aligned_iou`: volume overlap at a threshold; the
  aligned form maximises over integer translations and the point inversion
  ``r -> -r`` of the prediction, the transformations a far-field intensity
  cannot see (exactly so for translations; approximately, through absorption
  and the Ewald curvature, for the inversion).
* :func:`pattern_mse`: the paper's protocol for experimental data: mean over
  all detector pixels of the squared difference of normalised log patterns,
  pixels outside the valid region counted as zero difference (one pattern;
  :func:`msftnet.refine.measurement.paper_mse`, the same loss, is what the
  refinement and the fits report for batches).
"""

from __future__ import annotations

import numpy as np

from msftnet import losses
from msftnet.refine import measurement

#: One-line description of :func:`pattern_mse`, stored with reported losses.
PAPER_PROTOCOL = ("mean over all 128x128 pixels of the squared difference of "
                  "normalised log patterns, zero outside the valid region "
                  "(Stielow & Scheel 2021, Fig. 11)")

__all__ = ["PAPER_PROTOCOL", "pearson_r", "best_offset_correlation", "pattern_mse", "iou",
           "aligned_iou"]


def pearson_r(a, b, mask=None) -> float:
  """Pearson correlation of two arrays (over ``mask`` where given)."""
  a = np.asarray(a, dtype=np.float64)
  b = np.asarray(b, dtype=np.float64)
  if a.shape != b.shape:
    raise ValueError(f"pearson_r: shapes differ, {a.shape} vs {b.shape}.")
  if mask is not None:
    mask = np.asarray(mask, dtype=bool)
    a, b = a[mask], b[mask]
  a = a.ravel() - a.mean()
  b = b.ravel() - b.mean()
  denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
  return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def _batched_r(logs: np.ndarray, target: np.ndarray) -> np.ndarray:
  """r of each row of ``logs [K, P]`` with ``target [P]``."""
  x = logs - logs.mean(axis=1, keepdims=True)
  y = target - target.mean()
  num = x @ y
  den = np.sqrt(np.einsum("kp,kp->k", x, x) * np.dot(y, y))
  return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def best_offset_correlation(intensity, target, mask=None, *,
                            decades: float = 14.0, refine: int = 3
                            ) -> tuple[float, float]:
  """Max over c of ``pearson_r(log(intensity + c), target)``.

  Args:
    intensity: ``[M, M]`` simulated intensity ``|E|^2`` (non-negative).
    target: ``[M, M]`` a stored normalised log pattern.
    mask: optional ``[M, M]`` bool, pixels to compare.
    decades: c is searched over ``max(I) * 10^[-decades, 0]`` on a log grid,
      refined ``refine`` times around the best value.

  Returns:
    ``(r, c)``: the best correlation and its offset.
  """
  inten = np.asarray(intensity, dtype=np.float64)
  tgt = np.asarray(target, dtype=np.float64)
  if mask is not None:
    mask = np.asarray(mask, dtype=bool)
    inten, tgt = inten[mask], tgt[mask]
  inten, tgt = inten.ravel(), tgt.ravel()
  top = max(float(inten.max()), 1e-300)
  lo, hi = np.log10(top) - decades, np.log10(top)
  best_r, best_c = -np.inf, top
  for _ in range(refine + 1):
    grid = np.linspace(lo, hi, 57)
    rs = _batched_r(np.log(inten[None, :] + 10.0 ** grid[:, None]), tgt)
    i = int(np.argmax(rs))
    if rs[i] > best_r:
      best_r, best_c = float(rs[i]), float(10.0 ** grid[i])
    step = grid[1] - grid[0]
    lo, hi = grid[i] - step, grid[i] + step
  return best_r, best_c


def pattern_mse(pattern, reference, valid=None) -> float:
  """Mean over all pixels of ``(pattern - reference)^2``, zero outside ``valid``.

  The paper's protocol (Fig. 11): both are normalised log patterns in [0, 1];
  pixels outside the detector's valid region count as zero difference, and the
  mean is over all ``M x M`` pixels.
  """
  p = np.asarray(pattern, dtype=np.float32)
  r = np.asarray(reference, dtype=np.float32)
  if p.shape != r.shape:
    raise ValueError(f"pattern_mse: shapes differ, {p.shape} vs {r.shape}.")
  return float(measurement.paper_mse(p, r, None if valid is None
                                else np.asarray(valid, bool)))


def iou(pred, target, threshold: float = 0.5) -> float:
  """Intersection over union of ``pred > t`` and ``target > t`` (one volume;
  :func:`msftnet.losses.iou` for batches)."""
  return float(losses.iou(np.asarray(pred)[None], np.asarray(target)[None],
                          threshold)[0])


def aligned_iou(pred, target, threshold: float = 0.5) -> float:
  """Max IoU over integer (cyclic) shifts and the inversion of ``pred``.

  Overlaps for all shifts come from one FFT cross-correlation of the two
  binarised volumes ``[N, N, N]``; ``|p|`` and ``|t|`` do not change under a
  shift, so ``IoU = overlap / (|p| + |t| - overlap)``.
  """
  p = (np.asarray(pred) > threshold).astype(np.float64)
  t = (np.asarray(target) > threshold).astype(np.float64)
  if p.shape != t.shape or p.ndim != 3:
    raise ValueError(f"aligned_iou: expected two [N, N, N] volumes, got "
                     f"{p.shape} and {t.shape}.")
  sp, st = p.sum(), t.sum()
  if sp + st == 0:
    return 1.0
  ft = np.fft.rfftn(t)
  best = 0.0
  for q in (p, p[::-1, ::-1, ::-1]):
    overlap = np.fft.irfftn(np.conj(np.fft.rfftn(q)) * ft, s=t.shape,
                            axes=(0, 1, 2))
    best = max(best, float(np.rint(overlap).max()))
  return best / (sp + st - best)
