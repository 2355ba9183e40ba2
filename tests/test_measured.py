"""Tests of reading measured patterns (msftnet.measured)."""

import h5py
import numpy as np
from PIL import Image
import pytest

from msftnet import measured


def _png(path, arr, mode=None):
  Image.fromarray(arr, mode=mode).save(path)
  return str(path)


def _bytes(path, content):
  path.write_bytes(content)
  return path


def test_png_8_and_16_bit_and_npy_read_alike(tmp_path):
  rng = np.random.default_rng(0)
  v = rng.integers(0, 256, (128, 128)).astype(np.uint8)
  p8, v8 = measured.load_measurement(_png(tmp_path / "a.png", v))
  p16, _ = measured.load_measurement(
      _png(tmp_path / "b.png", (v.astype(np.uint16) * 257)))
  np.save(tmp_path / "c.npy", v.astype(np.float32) / 255)
  pn, _ = measured.load_measurement(tmp_path / "c.npy")
  assert v8.all()
  np.testing.assert_allclose(p8, v / 255, atol=1e-7)
  np.testing.assert_allclose(p16, p8, atol=1e-6)
  np.testing.assert_allclose(pn, p8, atol=1e-7)


def test_hdf5_cxi_with_its_mask_and_an_extra_mask(tmp_path):
  data = np.random.default_rng(1).uniform(0, 50, (1, 128, 128))
  bad = np.zeros((128, 128), np.uint8)
  bad[:10] = 1                                  # CXI: non-zero = bad pixel
  path = tmp_path / "shot.cxi"
  with h5py.File(path, "w") as f:
    f["entry_1/data_1/data"] = data
    f["entry_1/data_1/mask"] = bad
  extra = np.ones((128, 128), np.uint8)
  extra[:, :5] = 0
  np.save(tmp_path / "m.npy", extra)
  pat, valid, info = measured.load_measurement(
      path, mask=str(tmp_path / "m.npy"), return_info=True)
  assert info["input_scale"] == "counts"            # values above 1
  assert pat.min() == 0 and pat.max() == 1          # log-scaled into [0, 1]
  assert not valid[:10].any() and not valid[:, :5].any()
  assert valid[10:, 5:].all()
  assert (pat[~valid] == 0).all()


def test_experimental_colormap_and_zero_pixels():
  x = np.array([0.0, 0.15, 0.3, 0.6, 0.88, 0.94, 1.0])
  y = measured.undo_colormap(x)
  np.testing.assert_allclose(y[[0, 2, 4, 6]], [0.0, 0.38, 0.7425, 1.0],
                             atol=1e-6)
  assert np.all(np.diff(y) > 0)                     # monotone, continuous
  eps = 1e-6
  for knot in (0.3, 0.88):
    lo, hi = measured.undo_colormap(np.array([knot - eps, knot + eps]))
    assert abs(hi - lo) < 1e-4


def test_experimental_fixture(tmp_path):
  import pathlib
  path = pathlib.Path(__file__).parent / "fixtures" / "experiment" / "barke5.png"
  pat, valid = measured.load_measurement(path, experimental=True)
  raw = np.asarray(Image.open(path), np.float32) / 255
  np.testing.assert_array_equal(valid, raw > 0)
  assert 0.2 < valid.mean() < 0.26
  np.testing.assert_allclose(pat[valid], measured.undo_colormap(raw[valid]),
                             atol=1e-6)


@pytest.mark.parametrize("make, expect", [
    (lambda d: _bytes(d / "empty.png", b""), "empty"),
    (lambda d: _bytes(d / "junk.png", b"not a png"), "not a readable image"),
    (lambda d: d / "missing.png", "no such file"),
    (lambda d: _png(d / "small.png", np.zeros((64, 64), np.uint8)),
     "expected (128, 128)"),
    (lambda d: np.save(d / "nan.npy", np.full((128, 128), np.nan))
     or d / "nan.npy", "NaN"),
    (lambda d: _png(d / "black.png", np.zeros((128, 128), np.uint8)),
     "leaves no pixel"),
])
def test_bad_inputs_get_one_clear_sentence(tmp_path, make, expect):
  path = make(tmp_path)
  with pytest.raises(ValueError, match=None) as err:
    measured.load_measurement(path, experimental="black" in str(path))
  msg = str(err.value)
  assert expect in msg and str(path) in msg and "\n" not in msg


def test_hdf5_without_the_dataset(tmp_path):
  path = tmp_path / "x.h5"
  with h5py.File(path, "w") as f:
    f["other"] = np.zeros((128, 128))
  with pytest.raises(ValueError, match="entry_1/data_1/data"):
    measured.load_measurement(path)


def test_load_many_keeps_going_and_rejects_duplicate_stems(tmp_path):
  img = np.arange(128 * 128).reshape(128, 128) % 251
  good = _png(tmp_path / "a.png", img.astype(np.uint8))
  (tmp_path / "sub").mkdir()
  dup = _png(tmp_path / "sub" / "a.png", img.astype(np.uint8))
  ok, bad = measured.load_many([good, tmp_path / "nope.png", dup])
  assert [o[0] for o in ok] == ["a"]
  assert len(bad) == 2 and "no such file" in bad[0][1]
  assert "overwrite" in bad[1][1]


def test_counts_are_log_scaled_inside_the_valid_pixels(tmp_path):
  rng = np.random.default_rng(2)
  inten = 1e7 * np.exp(-np.hypot(*np.mgrid[-64:64, -64:64]) / 10.0)
  counts = rng.poisson(inten).astype(np.int32)
  counts[5, 5] = 10**9                               # a hot pixel, masked
  bad = np.zeros((128, 128), np.uint16)
  bad[5, 5] = 4                                      # CXI bit: hot
  path = tmp_path / "run.cxi"
  with h5py.File(path, "w") as f:
    f["entry_1/data_1/data"] = counts[None]
    f["entry_1/data_1/mask"] = bad
  pat, valid, info = measured.load_measurement(path, return_info=True)
  assert info["input_scale"] == "counts" and "int32" in info[
      "input_scale_reason"]
  assert not valid[5, 5] and pat[5, 5] == 0
  assert info["dark_level"] == measured.COUNTS_DARK == 100.0
  want = np.log(counts + 100.0)
  want = (want - want[valid].min()) / (want[valid].max() - want[valid].min())
  np.testing.assert_allclose(pat[valid], want[valid], atol=1e-6)
  # The dark level is the caller's to choose.
  pat1, _, info1 = measured.load_measurement(path, return_info=True,
                                             counts_dark=1.0)
  want1 = np.log(counts + 1.0)
  want1 = (want1 - want1[valid].min()) / (want1[valid].max()
                                          - want1[valid].min())
  assert info1["dark_level"] == 1.0
  np.testing.assert_allclose(pat1[valid], want1[valid], atol=1e-6)
  with pytest.raises(ValueError, match="counts_dark must be > 0"):
    measured.load_measurement(path, counts_dark=0.0)
  assert "warning" not in info and "warning" not in info1
  # Counts far below the dark level (not photons?) are flagged, not hidden.
  weak = tmp_path / "weak.npy"
  few = np.round(counts / 2e5).astype(np.int32)       # peak 50
  few[5, 5] = 0                                       # no hot pixel here
  np.save(weak, few)
  _, _, info_w = measured.load_measurement(weak, return_info=True)
  assert "flattens the pattern" in info_w["warning"]
  # Linear scaling would leave almost every pixel near 0; the log does not.
  assert np.median(pat[valid]) > 0.1
  # The same numbers declared a log pattern are refused, not rescaled.
  with pytest.raises(ValueError, match=r"expected a normalised log pattern"):
    measured.load_measurement(path, input_scale="log")


@pytest.mark.parametrize("values, expect", [
    (np.zeros((128, 128), np.float32), "constant"),
    (np.full((128, 128), -3.0) + np.eye(128), "negative"),
])
def test_garbage_numbers_are_refused(tmp_path, values, expect):
  np.save(tmp_path / "x.npy", values)
  with pytest.raises(ValueError, match=expect):
    measured.load_measurement(tmp_path / "x.npy", input_scale="counts")


def test_grey_alpha_png_reads_the_grey(tmp_path):
  grey = (np.arange(128 * 128).reshape(128, 128) % 200).astype(np.uint8)
  alpha = np.full((128, 128), 255, np.uint8)
  path = tmp_path / "la.png"
  Image.fromarray(np.stack([grey, alpha], -1), mode="LA").save(path)
  pat, _ = measured.load_measurement(path)
  np.testing.assert_allclose(pat, grey / 255, atol=1e-7)


def test_cxi_run_of_frames_with_soft_links_and_per_frame_masks(tmp_path):
  rng = np.random.default_rng(3)
  inten = 1e4 * np.exp(-np.hypot(*np.mgrid[-64:64, -64:64]) / 8.0)
  frames = rng.poisson(inten, (3, 128, 128)).astype(np.uint16)
  frames[1] = 7                                   # a constant, unusable frame
  bad = np.zeros((3, 128, 128), np.uint8)
  bad[2, :4] = 1
  path = tmp_path / "run.cxi"
  with h5py.File(path, "w") as f:
    f["entry_1/instrument_1/detector_1/data"] = frames
    f["entry_1/instrument_1/detector_1/mask"] = bad
    f["entry_1/data_1/data"] = h5py.SoftLink(
        "/entry_1/instrument_1/detector_1/data")
  good, errors = measured.load_many([path])
  assert [g[0] for g in good] == ["run_frame0", "run_frame2"]
  assert len(errors) == 1 and "frame 1" in errors[0][1] and \
      "constant" in errors[0][1]
  assert good[0][3].all() and not good[1][3][:4].any()
  assert good[1][4]["frame"] == 2 and good[1][4]["n_frames"] == 3
  with pytest.raises(ValueError, match="holds 3 frames"):
    measured.load_measurement(path)
  p2, v2 = measured.load_measurement(path, frame=2)
  np.testing.assert_array_equal(p2, good[1][2])
  with pytest.raises(ValueError, match="no frame 5"):
    measured.load_measurement(path, frame=5)


def test_cxi_detector_geometry_maps_onto_the_q_grid(tmp_path):
  from msftnet import detector as det_lib
  geometry_px, pixel_m, dist_m = (300, 300), 150e-6, 0.030
  det = det_lib.FlatDetector(dist_m * 1e3, pixel_m * 1e6, (149.5, 149.5), 13.5)
  qy, qx, omega = det_lib.detector_q(det, geometry_px)
  counts = (1e8 * np.exp(-np.hypot(qy, qx) / 0.05) * omega).astype(np.int32)
  path = tmp_path / "flat.cxi"
  with h5py.File(path, "w") as f:
    f["entry_1/data_1/data"] = counts
    d = f.create_group("entry_1/instrument_1/detector_1")
    d["distance"] = dist_m
    d["x_pixel_size"] = pixel_m
    d["y_pixel_size"] = pixel_m
    d["corner_position"] = [-150 * pixel_m, -150 * pixel_m, dist_m]
    f["entry_1/instrument_1/source_1/energy"] = 1.98644586e-16 / 13.5
  pat, valid, info = measured.load_measurement(path, return_info=True)
  assert info["detector"]["source"]["distance_mm"] == "file"
  assert info["detector"]["centre_px"] == pytest.approx((149.5, 149.5))
  assert info["detector"]["wavelength_nm"] == pytest.approx(13.5)
  assert 0.2 < info["detector_coverage"] < 1 and valid.mean() == \
      info["detector_coverage"]
  # The solid-angle corrected, resampled pattern is the radial exponential.
  gy, gx = measured.Geometry().q_grid
  want = np.log(1e8 * np.exp(-np.hypot(gy, gx) / 0.05) + measured.COUNTS_DARK)
  want = (want - want[valid].min()) / (want[valid].max() - want[valid].min())
  assert np.max(np.abs(pat[valid] - want[valid])) < 0.03
  # Flags override the file; a wavelength the model was not made for is
  # refused; a detector frame without geometry is refused.
  with pytest.raises(ValueError, match="wavelength 7"):
    measured.load_measurement(path, detector={"wavelength_nm": 7.0})
  np.save(tmp_path / "flat.npy", counts)
  with pytest.raises(ValueError, match="distance and pixel size"):
    measured.load_measurement(tmp_path / "flat.npy")
  p2, v2 = measured.load_measurement(
      tmp_path / "flat.npy", detector={"distance_mm": 30.0, "pixel_um": 150.0})
  np.testing.assert_allclose(p2, pat, atol=1e-6)
