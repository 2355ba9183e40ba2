"""Flat detector -> q grid (msftnet.detector) against the direct model."""

import numpy as np
import pytest

from msftnet import Geometry
from msftnet import detector as det_lib

GEOMETRY = Geometry()
RADIUS_NM = 25.0            # fringes ~34 model pixels apart


def _born_sphere(q3):
  """|F|^2 of a homogeneous sphere (Born), normalised to 1 at q = 0."""
  x = np.maximum(q3 * RADIUS_NM, 1e-3)
  return (3 * (np.sin(x) - x * np.cos(x)) / x**3)**2   # exact to 1e-6 at 1e-3


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
