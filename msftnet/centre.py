"""The pattern's centre: where q = 0 falls on the detector.

The MSFT puts ``q = 0`` at pixel ``(M // 2, M // 2)``. A measured pattern's
centre can be off by a few pixels (beam position, detector placement; the
paper's simulated-experiment filter shifts patterns by up to 5 px, twice).
Unmodelled, such a shift is read as shape. :func:`find_centre` estimates the
integer offset from the pattern's approximate point symmetry about its centre
(Friedel's law ``I(q) = I(-q)`` holds in the small-angle limit; absorption
and the Ewald curvature break it weakly at small q), inside the valid pixels:
the normalised mean squared difference between ``t(c + d)`` and ``t(c - d)``
over pixel pairs within ``radius`` of the candidate centre ``c``, minimised
over ``|c - M // 2| <= max_shift`` per axis. :func:`shift_pattern` then moves
the pattern so that its centre lands on ``M // 2`` (pixels moved in from
outside the detector become invalid).
"""

from __future__ import annotations

import numpy as np

__all__ = ["find_centre", "shift_pattern"]


def find_centre(pattern, valid=None, *, max_shift: int = 10,
                radius: int = 40, min_pairs: int = 200
                ) -> tuple[int, int]:
  """Integer offset ``(dy, dx)`` of the pattern's centre from pixel ``M // 2``.

  Args:
    pattern: ``[M, M]`` pattern (normalised log, or any monotone scale).
    valid: optional ``[M, M]`` bool mask.
    max_shift: largest offset searched per axis (px).
    radius: pixel pairs within this distance of the candidate centre.
    min_pairs: candidates with fewer valid pairs are skipped.

  Returns ``(0, 0)`` when no candidate has enough valid pairs.
  """
  t = np.asarray(pattern, np.float64)
  m = t.shape[0]
  v = (np.ones(t.shape, bool) if valid is None
       else np.asarray(valid, bool)).astype(np.float64)
  t = t * v
  c0 = m // 2
  yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
  half = ((yy * yy + xx * xx <= radius * radius)
          & ((yy > 0) | ((yy == 0) & (xx > 0))))
  dy, dx = yy[half], xx[half]
  best, arg = np.inf, (0, 0)
  for sy in range(-max_shift, max_shift + 1):
    for sx in range(-max_shift, max_shift + 1):
      cy, cx = c0 + sy, c0 + sx
      ya, xa, yb, xb = cy + dy, cx + dx, cy - dy, cx - dx
      ok = ((np.minimum.reduce([ya, xa, yb, xb]) >= 0)
            & (np.maximum.reduce([ya, xa, yb, xb]) < m))
      ya, xa, yb, xb = ya[ok], xa[ok], yb[ok], xb[ok]
      w = v[ya, xa] * v[yb, xb]
      nw = w.sum()
      if nw < min_pairs:
        continue
      a, b = t[ya, xa], t[yb, xb]
      mean = (w * (a + b)).sum() / (2 * nw)
      spread = (w * ((a - mean) ** 2 + (b - mean) ** 2)).sum() / (2 * nw)
      score = (w * (a - b) ** 2).sum() / nw / max(spread, 1e-12)
      if score < best:
        best, arg = score, (sy, sx)
  return arg


def shift_pattern(pattern, valid, shift) -> tuple[np.ndarray, np.ndarray]:
  """Move the pixel ``M // 2 + shift`` to ``M // 2``: ``(pattern, valid)``.

  ``out[m] = pattern[m + shift]``; pixels whose source lies outside the
  detector are zero and invalid. ``shift = (0, 0)`` returns copies.
  """
  t = np.asarray(pattern)
  v = (np.ones(t.shape, bool) if valid is None else np.asarray(valid, bool))
  m0, m1 = t.shape
  rows = np.arange(m0)[:, None] + int(shift[0])
  cols = np.arange(m1)[None, :] + int(shift[1])
  inside = (rows >= 0) & (rows < m0) & (cols >= 0) & (cols < m1)
  r, c = np.clip(rows, 0, m0 - 1), np.clip(cols, 0, m1 - 1)
  return (np.where(inside, t[r, c], 0).astype(t.dtype), inside & v[r, c])
