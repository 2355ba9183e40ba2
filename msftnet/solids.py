"""Convex solids: the paper's 21-shape basis (work in progress: example only)."""

from __future__ import annotations

import numpy as np

__all__ = ["example_density"]


def example_density(n: int = 64) -> np.ndarray:
  """A truncated, slightly elongated octahedron, tilted, radius ~0.3 box.

  Anti-aliased by 3^3 supersampling; returned as ``[n, n, n]`` float32.
  """
  s = 3
  c = ((np.arange(n * s) + 0.5) / s - n / 2) / n          # box units [-.5, .5]
  z, y, x = np.meshgrid(c, c, c, indexing="ij", sparse=True)
  a, b = 0.35, 0.5                                         # tilt angles (rad)
  xr = np.cos(a) * x - np.sin(a) * z
  zr = np.sin(a) * x + np.cos(a) * z
  yr = np.cos(b) * y - np.sin(b) * zr
  zr = np.sin(b) * y + np.cos(b) * zr
  zr = zr / 1.3                                            # stretch along z'
  octa = np.abs(xr) + np.abs(yr) + np.abs(zr) <= 0.33
  cube = np.maximum(np.maximum(np.abs(xr), np.abs(yr)), np.abs(zr)) <= 0.22
  occ = (octa & cube).astype(np.float32)
  return occ.reshape(n, s, n, s, n, s).mean(axis=(1, 3, 5))
