"""Flat detectors: raw detector pixels -> the model's q grid.

The model's pattern (:class:`msftnet.Geometry`) is sampled on a regular grid
of the transverse momentum transfer ``(qy, qx)``: pixel ``m`` of an axis sits
at ``q = (m - M // 2) dq``. A real detector is a flat plane at distance ``D``
from the particle, perpendicular to the beam, with pixels of size ``p`` and
the direct beam hitting it at pixel ``(row, col) = centre``.

Mapping. A detector pixel at ``(y, x) = p (row - centre)`` (in the detector
plane) sees the direction ``u = (x, y, D) / R``, ``R = sqrt(x^2 + y^2 +
D^2)``; its transverse momentum transfer is ``(qy, qx) = k (y, x) / R``
(``k = 2 pi / lambda``), its solid angle ``Omega = p^2 D / R^3``. A model
pixel ``(qy, qx)`` with ``|q| < k`` therefore lies at ``(y, x) = D (qy, qx) /
sqrt(k^2 - q^2)`` on the detector.

Resampling (:func:`to_q_grid`). Counts are divided by the pixel's solid
angle relative to the central pixel, ``(D / R)^3``, so they become
proportional to the differential cross-section ``|F(q)|^2`` that the MSFT
computes (no polarisation factor: the MSFT has none). Each model pixel then
takes the mean over the valid detector pixels whose centre falls into it
(when the detector is finer than the model grid; this keeps every photon),
else the bilinear interpolation between the four valid detector pixels
around it. A model pixel that neither receives a detector pixel nor has four
valid neighbours (outside the detector, in the central hole, next to a
masked pixel) is invalid. A pattern already on the model's grid needs none
of this.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from msftnet.geometry import Geometry

__all__ = ["FlatDetector", "detector_q", "to_q_grid"]


def _positive(name, value):
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"FlatDetector.{name} must be a number, got "
                     f"{value!r}.") from None
  if not math.isfinite(v) or v <= 0:
    raise ValueError(f"FlatDetector.{name} must be a positive finite number, "
                     f"got {value!r}.")


@dataclasses.dataclass(frozen=True)
class FlatDetector:
  """A flat detector perpendicular to the beam.

  Attributes:
    distance_mm: D, particle to detector plane, in mm.
    pixel_um: p, pixel edge length in micrometres (square pixels).
    centre_px: ``(row, col)`` where the direct beam hits the detector, in
      pixels (0-based; ``(0, 0)`` is the centre of the first pixel).
    wavelength_nm: the photon wavelength, in nm.
  """

  distance_mm: float
  pixel_um: float
  centre_px: tuple[float, float]
  wavelength_nm: float

  def __post_init__(self):
    _positive("distance_mm", self.distance_mm)
    _positive("pixel_um", self.pixel_um)
    _positive("wavelength_nm", self.wavelength_nm)
    try:
      row, col = (float(c) for c in self.centre_px)
    except (TypeError, ValueError):
      raise ValueError(f"FlatDetector.centre_px must be (row, col), got "
                       f"{self.centre_px!r}.") from None
    if not (math.isfinite(row) and math.isfinite(col)):
      raise ValueError(f"FlatDetector.centre_px must be finite, got "
                       f"{self.centre_px!r}.")
    object.__setattr__(self, "centre_px", (row, col))

  @property
  def k_per_nm(self) -> float:
    return 2 * math.pi / float(self.wavelength_nm)


def detector_q(detector: FlatDetector, shape) -> tuple[np.ndarray, ...]:
  """``(qy, qx, relative_solid_angle)`` of each detector pixel, ``[H, W]``.

  q in nm^-1; the solid angle relative to a pixel on the beam axis,
  ``(D / R)^3``.
  """
  h, w = shape
  p = detector.pixel_um * 1e3                     # nm
  d = detector.distance_mm * 1e6                  # nm
  y = (np.arange(h) - detector.centre_px[0])[:, None] * p
  x = (np.arange(w) - detector.centre_px[1])[None, :] * p
  r = np.sqrt(x**2 + y**2 + d**2)
  k = detector.k_per_nm
  return k * y / r + 0 * x, k * x / r + 0 * y, (d / r)**3


def _grid_to_detector(detector: FlatDetector, geometry: Geometry):
  """Fractional detector ``(row, col)`` of every model pixel; NaN if none."""
  qy, qx = geometry.q_grid
  k = detector.k_per_nm
  kz2 = k**2 - qx**2 - qy**2
  kz = np.sqrt(np.where(kz2 > 0, kz2, np.nan))
  d = detector.distance_mm * 1e6
  p = detector.pixel_um * 1e3
  return (detector.centre_px[0] + d * qy / kz / p,
          detector.centre_px[1] + d * qx / kz / p)


def to_q_grid(counts, valid, detector: FlatDetector,
              geometry: Geometry | None = None, *, name: str = "pattern"):
  """Flat-detector counts ``[H, W]`` -> ``(intensity [M, M], valid [M, M])``.

  See the module docstring. The intensity is in counts per central-pixel
  solid angle; invalid model pixels are 0.

  Raises:
    ValueError: shapes disagree, or no model pixel is covered by a valid
      detector pixel (one sentence naming ``name``).
  """
  geometry = Geometry() if geometry is None else geometry
  counts = np.asarray(counts, np.float64)
  valid = np.asarray(valid, bool)
  if counts.ndim != 2 or valid.shape != counts.shape:
    raise ValueError(f"{name}: detector data {counts.shape} and mask "
                     f"{valid.shape} must be the same 2D shape.")
  m = geometry.detector_px
  qy, qx, omega = detector_q(detector, counts.shape)
  per_sr = np.where(valid, counts / omega, 0.0)

  # Binning: model pixel index of each detector pixel centre.
  dq = float(geometry.q_step_per_nm)
  iy = np.rint(qy / dq).astype(np.int64) + m // 2
  ix = np.rint(qx / dq).astype(np.int64) + m // 2
  inside = valid & (iy >= 0) & (iy < m) & (ix >= 0) & (ix < m)
  flat = (iy * m + ix)[inside]
  total = np.bincount(flat, per_sr[inside], minlength=m * m).reshape(m, m)
  hits = np.bincount(flat, minlength=m * m).reshape(m, m)
  binned = np.where(hits > 0, total / np.maximum(hits, 1), 0.0)

  # Bilinear interpolation between valid detector pixels (coarse detectors).
  row, col = _grid_to_detector(detector, geometry)
  h, w = counts.shape
  ok = np.isfinite(row) & np.isfinite(col)
  r0 = np.floor(np.where(ok, row, -2)).astype(np.int64)
  c0 = np.floor(np.where(ok, col, -2)).astype(np.int64)
  ok &= (r0 >= 0) & (r0 + 1 < h) & (c0 >= 0) & (c0 + 1 < w)
  r0c, c0c = np.clip(r0, 0, h - 2), np.clip(c0, 0, w - 2)
  fr, fc = row - r0c, col - c0c
  interp = np.zeros((m, m))
  for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                      (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
    ok &= valid[r0c + dr, c0c + dc]
    interp = interp + np.nan_to_num(wgt) * per_sr[r0c + dr, c0c + dc]

  out_valid = (hits > 0) | ok
  out = np.where(hits > 0, binned, np.where(ok, interp, 0.0))
  if not out_valid.any():
    raise ValueError(f"{name}: no valid detector pixel falls on the model's q "
                     f"grid (|q| <= {geometry.q_max_per_nm:.3g} nm^-1); check "
                     "the detector distance, pixel size, beam centre and "
                     "wavelength.")
  return out.astype(np.float32), out_valid
