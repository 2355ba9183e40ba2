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

Orientation (the handedness convention). The mapping neither transposes
nor mirrors: the detector's rows (first array axis) become the model's qy
(the pattern's rows), its columns qx, and ``(y, x)`` above are measured
along the rows and the columns from the beam centre. A detector pixel with
``row > centre[0]`` and ``col < centre[1]`` lands at ``qy > 0``, ``qx <
0``: at a model pixel ``(m_y, m_x)`` with ``m_y > M // 2 > m_x``. The
density that explains the pattern is ``[N, N, N]`` indexed ``(z, y, x)``:
z along the beam, y along the detector's rows, x along its columns,
``(x, y, z)`` right-handed. For a CXI detector with CXI's default basis
vectors (rows along the lab's -y, columns along -x;
:func:`cxi_beam_centre`) the model's frame is the lab's
turned by 180 degrees about the beam; a mirrored detector image is refused
there.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from msftnet.geometry import Geometry

__all__ = ["FlatDetector", "detector_q", "to_q_grid", "cxi_beam_centre",
           "CXI_DEFAULT_BASIS"]


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


#: CXI's ``basis_vectors`` when a file has none, in units of the pixel
#: size: the step from one pixel to the next along the rows (first array
#: axis) and the columns, as (x, y, z) in the lab (y up, z along the beam).
CXI_DEFAULT_BASIS = ((0.0, -1.0, 0.0), (-1.0, 0.0, 0.0))


def cxi_beam_centre(corner_m, pixel_m: float, basis_m=None, *,
                    name: str = "detector") -> tuple[float, float]:
  """``(row, col)`` pixel where the direct beam hits a CXI detector.

  CXI (file format 1.6, "The orientation of pixel detectors"; Maia 2012,
  doi:10.1038/nmeth.2110) places the centre of pixel ``(r, c)`` at ``corner + (r + 1/2) b_r +
  (c + 1/2) b_c`` in the lab (x, y, z in m, the beam along +z through
  x = y = 0), ``corner`` being the outer corner of the first pixel
  (``corner_position``) and ``b_r``, ``b_c`` the last two rows of
  ``basis_vectors`` (default :data:`CXI_DEFAULT_BASIS`), here taken as
  directions with the length ``pixel_m``. The detector must face the beam
  and its image must not be mirrored (``b_c x b_r`` along +z, as CXI's
  default), so that keeping the image's rows and columns as the model's qy
  and qx (the module docstring) turns the lab about the beam only.
  ValueError (one sentence naming ``name``) otherwise.
  """
  if not (math.isfinite(pixel_m) and pixel_m > 0):
    raise ValueError(f"{name}: the pixel size is {pixel_m!r} m, expected a "
                     "positive size to place the beam centre.")
  corner = np.ravel(np.asarray(corner_m, np.float64))
  if corner.size not in (2, 3) or not np.all(np.isfinite(corner)):
    raise ValueError(f"{name}: corner_position is {corner.tolist()}, "
                     "expected the finite x, y, z of the first pixel's "
                     "corner in m.")
  basis = np.asarray(CXI_DEFAULT_BASIS if basis_m is None else basis_m,
                     np.float64)
  if basis.ndim != 2 or basis.shape[0] < 2 or basis.shape[1] != 3 or not (
      np.all(np.isfinite(basis))):
    raise ValueError(f"{name}: basis_vectors has shape {basis.shape}, "
                     "expected finite [2, 3] steps along the rows and the "
                     "columns in m.")
  b_r, b_c = basis[-2], basis[-1]
  norm = np.linalg.norm(basis[-2:], axis=1)
  if np.any(norm == 0) or np.any(np.abs([b_r[2], b_c[2]]) > 1e-3 * norm):
    raise ValueError(f"{name}: basis_vectors {basis[-2:].tolist()} leave "
                     "the detector plane, expected a flat detector facing "
                     "the beam (z components 0).")
  u_r, u_c = b_r[:2] / norm[0], b_c[:2] / norm[1]
  if abs(u_r @ u_c) > 1e-3:
    raise ValueError(f"{name}: basis_vectors {basis[-2:].tolist()} are not "
                     "perpendicular, expected rows and columns of square "
                     "pixels.")
  if u_c[0] * u_r[1] - u_c[1] * u_r[0] < 0:
    raise ValueError(f"{name}: basis_vectors {basis[-2:].tolist()} describe "
                     "a mirrored detector image, expected columns x rows "
                     "along the beam (+z) as CXI's default (0,-p,0), "
                     "(-p,0,0).")
  # corner + pixel_m (r + 1/2) u_r + pixel_m (c + 1/2) u_c = (0, 0)
  steps = np.linalg.solve(np.stack([u_r, u_c], axis=1) * pixel_m,
                          -corner[:2])
  return float(steps[0] - 0.5), float(steps[1] - 0.5)


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


def to_q_grid(counts, valid, detector: FlatDetector, geometry: Geometry, *,
              name: str = "pattern"):
  """Flat-detector counts ``[H, W]`` -> ``(intensity [M, M], valid [M, M])``.

  See the module docstring. ``geometry``: the model's, whose q grid
  (``M = geometry.detector_px`` pixels of ``geometry.q_step_per_nm``) the
  detector is mapped onto. The intensity is in counts per central-pixel
  solid angle; invalid model pixels are 0.

  Raises:
    ValueError: shapes disagree, or no model pixel is covered by a valid
      detector pixel (one sentence naming ``name``).
  """
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
