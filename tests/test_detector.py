"""Flat detector -> q grid (msftnet.detector) against the direct model; an
asymmetric spot on off-centre rectangular detectors against positions
worked out by hand (the orientation convention of msftnet.detector); the
beam centre of CXI's corner position and basis vectors."""

import numpy as np
import pytest

from msftnet import Geometry
from msftnet import detector as det_lib

from conftest import hand_pixel
from conftest import hand_q
from conftest import sphere_form_factor

GEOMETRY = Geometry()
RADIUS_NM = 25.0            # fringes ~34 model pixels apart


def _born_sphere(q3):
  """|F|^2 of a homogeneous sphere (Born), normalised to 1 at q = 0."""
  return sphere_form_factor(q3, RADIUS_NM)**2


def _q3_of_transverse(qy, qx, k):
  """|q3| of the outgoing direction with transverse momentum (qy, qx)."""
  q2 = qy**2 + qx**2
  qz = k - np.sqrt(np.maximum(k**2 - q2, 0.0))
  return np.sqrt(q2 + qz**2)


def _flat_detector_pattern(detector, shape):
  """Counts on a flat detector, computed directly per detector pixel."""
  qy, qx, omega = det_lib.detector_q(detector, shape)
  return 1e6 * _born_sphere(_q3_of_transverse(qy, qx, detector.k_per_nm)) \
      * omega


def _model_grid_truth():
  qy, qx = GEOMETRY.q_grid
  return 1e6 * _born_sphere(_q3_of_transverse(qy, qx, GEOMETRY.k_per_nm))


@pytest.mark.parametrize("shape,pixel_um,distance_mm", [
    ((600, 560), 75.0, 18.0),       # finer than the model grid: binning
    ((150, 140), 300.0, 18.0),      # coarser: bilinear interpolation
])
def test_flat_detector_sphere_maps_onto_the_model_grid(shape, pixel_um,
                                                       distance_mm):
  centre = (shape[0] / 2 + 3.3, shape[1] / 2 - 5.6)    # off-centre beam
  detector = det_lib.FlatDetector(distance_mm, pixel_um, centre, 13.5)
  counts = _flat_detector_pattern(detector, shape)
  intensity, valid = det_lib.to_q_grid(counts, np.ones(shape, bool), detector,
                                       GEOMETRY)
  truth = _model_grid_truth()
  # The covered q range: the detector's edges, minus a pixel of margin.
  assert 0.3 < valid.mean() < 0.9
  qy, qx = GEOMETRY.q_grid
  assert not valid[np.hypot(qy, qx) > GEOMETRY.k_per_nm].any()
  # Log intensities down to 1e-4 of the peak (the detector's dynamic range).
  a = np.log10(intensity[valid] + 100.0)
  b = np.log10(truth[valid] + 100.0)
  # Resampling error only: a model pixel's mean over its area (binning) or
  # a linear interpolation; measured r 0.9996 / 0.9985, median 0.003 / 0.012.
  assert np.corrcoef(a, b)[0, 1] > 0.997
  assert np.median(np.abs(a - b)) < 0.025
  # Without the solid-angle correction the wide angles are visibly off.
  qy_d, qx_d, omega = det_lib.detector_q(detector, shape)
  raw, _ = det_lib.to_q_grid(counts * 0 + omega, np.ones(shape, bool),
                             detector, GEOMETRY)
  np.testing.assert_allclose(raw[valid], 1.0, rtol=1e-6)


def test_masked_and_uncovered_pixels_become_invalid():
  shape = (200, 200)
  detector = det_lib.FlatDetector(40.0, 150.0, (100.0, 100.0), 13.5)
  counts = _flat_detector_pattern(detector, shape)
  mask = np.ones(shape, bool)
  mask[90:111, 90:111] = False                 # the central hole
  intensity, valid = det_lib.to_q_grid(counts, mask, detector, GEOMETRY)
  m = GEOMETRY.detector_px // 2
  assert not valid[m, m] and valid[m, m + 20]
  assert np.all(intensity[~valid] == 0)
  with pytest.raises(ValueError, match="no valid detector pixel"):
    det_lib.to_q_grid(counts, np.zeros(shape, bool), detector, GEOMETRY)


@pytest.mark.parametrize("field,value", [
    ("distance_mm", 0.0), ("pixel_um", float("nan")),
    ("wavelength_nm", -1.0), ("centre_px", (1.0,))])
def test_bad_detector_parameters_are_refused(field, value):
  kw = dict(distance_mm=50.0, pixel_um=75.0, centre_px=(10.0, 10.0),
            wavelength_nm=13.5)
  kw[field] = value
  with pytest.raises(ValueError, match=f"FlatDetector.{field}"):
    det_lib.FlatDetector(**kw)


def _centroid(w):
  """Intensity-weighted ``(row, col)`` and variances of the part of ``w``
  above 1e-3 of its peak, in model pixels."""
  w = np.where(w > 1e-3 * w.max(), w, 0.0)
  my, mx = np.mgrid[:w.shape[0], :w.shape[1]]
  cy, cx = (w * my).sum() / w.sum(), (w * mx).sum() / w.sum()
  return ((cy, cx), ((w * (my - cy)**2).sum() / w.sum(),
                     (w * (mx - cx)**2).sum() / w.sum()))


@pytest.mark.parametrize("shape,pixel_um,centre,spot,sigma", [
    # finer than the model grid (about 4 detector pixels per model pixel)
    ((120, 200), 75.0, (40.3, 130.6), (70.0, 95.0), (2.0, 7.0)),
    # coarser (about 1.3 model pixels per detector pixel)
    ((60, 90), 400.0, (22.4, 51.7), (30.0, 40.0), (1.5, 4.5)),
])
def test_an_elongated_off_axis_spot_lands_where_the_geometry_puts_it(
    shape, pixel_um, centre, spot, sigma):
  """An asymmetric object on an off-centre, rectangular (H != W) detector: a
  spot after the beam's row and before its column, elongated along the
  columns. It must land where the flat-detector geometry, worked out by
  hand, puts it (qy > 0, qx < 0: the orientation convention of
  msftnet.detector), elongated along qx; a transposed, mirrored or
  x/y-swapped mapping puts it elsewhere."""
  distance_mm, wavelength_nm = 20.0, 13.5
  detector = det_lib.FlatDetector(distance_mm, pixel_um, centre, wavelength_nm)

  def spot_per_sr(row, col):                 # the cross-section on the detector
    return 1e6 * np.exp(-0.5 * (((row - spot[0]) / sigma[0])**2
                                + ((col - spot[1]) / sigma[1])**2))

  rows, cols = np.mgrid[:shape[0], :shape[1]]
  # A pixel records the cross-section times its solid angle, relative to a
  # pixel on the beam axis: cos(2 theta)^3 = (D / R)^3.
  r_mm = np.hypot((rows - centre[0]) * pixel_um * 1e-3,
                  (cols - centre[1]) * pixel_um * 1e-3)
  counts = spot_per_sr(rows, cols) * np.cos(np.arctan(r_mm / distance_mm))**3
  intensity, valid = det_lib.to_q_grid(counts, np.ones(shape, bool), detector,
                                       GEOMETRY)
  got = np.where(valid, intensity, 0.0)

  m, dq = GEOMETRY.detector_px, GEOMETRY.q_step_per_nm
  qy, qx = hand_q(*spot, centre, pixel_um, distance_mm, wavelength_nm)
  peak = (m // 2 + qy / dq, m // 2 + qx / dq)     # fractional model pixel
  assert qy > 0 > qx and peak[0] > m // 2 > peak[1]
  assert np.max(np.abs(np.subtract(
      np.unravel_index(np.argmax(got), got.shape), peak))) <= 1
  # The whole spot: the cross-section at the detector point of every model
  # pixel (by hand), against the resampled counts.
  q_y, q_x = GEOMETRY.q_grid
  want = np.where(valid, spot_per_sr(*hand_pixel(
      q_y, q_x, centre, pixel_um, distance_mm, wavelength_nm)), 0.0)
  (got_c, got_var), (want_c, _) = _centroid(got), _centroid(want)
  # Resampling error only: binning / linear interpolation of the spot;
  # measured 0.02 / 0.06 model pixels, correlation 0.990 / 0.994.
  np.testing.assert_allclose(got_c, want_c, atol=0.15)
  assert np.corrcoef(got[valid], want[valid])[0, 1] > 0.98
  assert got_var[1] > 4 * got_var[0]              # elongated along qx


def test_cxi_basis_vectors_set_the_beam_centre():
  p = 75e-6
  # CXI's default, implicit and given: rows along -y, columns along -x;
  # pixel (r, c) at x = cx - (c + 1/2) p, y = cy - (r + 1/2) p.
  for basis in (None, [[0, -p, 0], [-p, 0, 0]]):
    assert det_lib.cxi_beam_centre([20.5 * p, 10.5 * p, 0.03], p, basis) == \
        pytest.approx((10.0, 20.0))
  # Turned by 90 degrees about the beam: rows along +x, columns along -y.
  # Pixel (r, c) at x = cx + (r + 1/2) p, y = cy - (c + 1/2) p.
  assert det_lib.cxi_beam_centre(
      [-40.5 * p, 60.5 * p, 0.03], p, [[p, 0, 0], [0, -p, 0]]) == \
      pytest.approx((40.0, 60.0))
  for basis, expect in [
      ([[0, -p, 0], [p, 0, 0]], "mirrored"),      # columns along +x
      ([[0, -p, 0.3 * p], [-p, 0, 0]], "detector plane"),
      ([[0, -p, 0], [-p, -0.2 * p, 0]], "not perpendicular"),
      ([[0, -p, 0]], "shape"),
      (None, "pixel size"),
  ]:
    with pytest.raises(ValueError, match=expect) as err:
      det_lib.cxi_beam_centre([0.0, 0.0, 0.03], 0.0 if basis is None else p,
                              basis, name="f.cxi")
    assert str(err.value).startswith("f.cxi: ") and "\n" not in str(err.value)
