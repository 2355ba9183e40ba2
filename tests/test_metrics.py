"""Tests of the agreement measures (msftnet.metrics)."""

import numpy as np
import pytest

from msftnet import metrics
from msftnet.refine import measurement as meas


def test_pearson_r_limits_invariance_and_mask():
  rng = np.random.default_rng(0)
  a = rng.random((16, 16))
  assert metrics.pearson_r(a, a) == pytest.approx(1.0)
  assert metrics.pearson_r(a, -a) == pytest.approx(-1.0)
  # Invariant under positive affine maps (hence under min-max normalisation).
  assert metrics.pearson_r(a, 3.0 * a + 2.0) == pytest.approx(1.0)
  # The mask selects the compared pixels: outside it, b is unrelated.
  mask = rng.random((16, 16)) > 0.5
  b = np.where(mask, 2.0 * a, rng.random((16, 16)))
  assert metrics.pearson_r(a, b, mask) == pytest.approx(1.0)
  assert metrics.pearson_r(a, b) < 0.95
  assert metrics.pearson_r(a, np.ones_like(a)) == 0.0      # no variance
  with pytest.raises(ValueError, match="shapes differ"):
    metrics.pearson_r(a, a[:8])


def test_best_offset_correlation_recovers_the_dark_offset():
  rng = np.random.default_rng(1)
  inten = 10.0 ** rng.uniform(0, 8, (32, 32))       # eight decades
  for c0 in (1e2, 1e5):
    logs = np.log(inten + c0)
    stored = (logs - logs.min()) / (logs.max() - logs.min())
    r, c = metrics.best_offset_correlation(inten, stored)
    assert r > 0.99999
    assert c == pytest.approx(c0, rel=0.1)
  # A wrong pattern does not correlate, whatever the offset.
  r, _ = metrics.best_offset_correlation(inten, rng.random((32, 32)))
  assert r < 0.2


def test_pattern_mse_is_the_papers_whole_detector_mean():
  p = np.ones((4, 4), np.float32)
  r = np.zeros((4, 4), np.float32)
  assert metrics.pattern_mse(p, r) == pytest.approx(1.0)
  valid = np.zeros((4, 4), bool)
  valid[:, :2] = True
  # Invalid pixels count as zero difference, but stay in the mean.
  assert metrics.pattern_mse(p, r, valid) == pytest.approx(0.5)
  # The same loss as the batched one the refinement reports.
  assert metrics.pattern_mse(p, r, valid) == pytest.approx(
      float(meas.paper_mse(p[None], r[None], valid[None])[0]))
  with pytest.raises(ValueError, match="shapes differ"):
    metrics.pattern_mse(p, r[:2])


def test_iou_and_aligned_iou():
  t = np.zeros((12, 12, 12))
  t[2:6, 3:8, 4:6] = 1.0                       # an asymmetric box
  half = t.copy()
  half[2:4] = 0.0                              # half of its voxels
  assert metrics.iou(t, t) == 1.0
  assert metrics.iou(half, t) == pytest.approx(0.5)
  # Translations and the point inversion are invisible to the far field.
  moved = np.roll(t, (3, -2, 4), axis=(0, 1, 2))
  assert metrics.iou(moved, t) == 0.0
  assert metrics.aligned_iou(moved, t) == pytest.approx(1.0)
  corner = np.zeros_like(t)
  corner[:3, :3, :3] = 1.0
  corner[0, 0, 0] = 0.0                        # no inversion symmetry
  inverted = np.roll(corner[::-1, ::-1, ::-1], (4, 4, 4), axis=(0, 1, 2))
  assert metrics.aligned_iou(inverted, corner) == pytest.approx(1.0)
  assert metrics.aligned_iou(half, t) == pytest.approx(0.5)
  # An empty prediction of a non-empty object has no overlap; two empty
  # volumes agree.
  assert metrics.aligned_iou(np.zeros_like(t), t) == 0.0
  assert metrics.aligned_iou(np.zeros_like(t), np.zeros_like(t)) == 1.0
  with pytest.raises(ValueError, match=r"\[N, N, N\]"):
    metrics.aligned_iou(t[0], t[0])
