"""Tests of reading measured patterns (msftnet.measured)."""

import math

import h5py
import numpy as np
from PIL import Image
import pytest

from msftnet import Geometry
from msftnet import detector as det_lib
from msftnet import measured

from conftest import hand_pixel
from conftest import hand_q

_HC_J_NM = 1.98644586e-16             # h c: a photon of 13.5 nm has hc / 13.5


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
  assert [o.stem for o in ok] == ["a"]
  assert isinstance(ok[0], measured.Frame) and ok[0].path == good
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
  assert [g.stem for g in good] == ["run_frame0", "run_frame2"]
  assert len(errors) == 1 and "frame 1" in errors[0][1] and \
      "constant" in errors[0][1]
  assert good[0].valid.all() and not good[1].valid[:4].any()
  assert good[1].info["frame"] == 2 and good[1].info["n_frames"] == 3
  with pytest.raises(ValueError, match="holds 3 frames"):
    measured.load_measurement(path)
  p2, v2 = measured.load_measurement(path, frame=2)
  np.testing.assert_array_equal(p2, good[1].pattern)
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
    # CXI's default basis vectors step along -y (rows) and -x (columns): the
    # first pixel's outer corner sits at +150 pixels in x and y.
    d["corner_position"] = [150 * pixel_m, 150 * pixel_m, dist_m]
    f["entry_1/instrument_1/source_1/energy"] = _HC_J_NM / 13.5
  pat, valid, info = measured.load_measurement(path, return_info=True)
  assert info["detector"]["source"]["distance_mm"] == "file"
  assert info["detector"]["centre_px"] == pytest.approx((149.5, 149.5))
  assert info["detector"]["wavelength_nm"] == pytest.approx(13.5)
  assert 0.2 < info["detector_coverage"] < 1 and valid.mean() == \
      info["detector_coverage"]
  # The solid-angle corrected, resampled pattern is the radial exponential.
  gy, gx = Geometry().q_grid
  want = np.log(1e8 * np.exp(-np.hypot(gy, gx) / 0.05) + measured.COUNTS_DARK)
  want = (want - want[valid].min()) / (want[valid].max() - want[valid].min())
  assert np.max(np.abs(pat[valid] - want[valid])) < 0.03
  # Resampled onto the q grid they are rates, not counts: no Poisson fit.
  assert measured.photons_of(info) is None
  assert "flat detector" in measured.why_no_photons(info)
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


def _write_cxi(path, data, *, mask=None, pixel_m=None, distance_m=None,
               corner_m=None, basis_m=None):
  """A CXI file: ``data`` (and ``mask``) at ``entry_1/data_1``, the detector
  geometry in ``entry_1/instrument_1`` where given, 13.5 nm photons."""
  with h5py.File(path, "w") as f:
    f["entry_1/data_1/data"] = data
    if mask is not None:
      f["entry_1/data_1/mask"] = mask
    if pixel_m is not None:
      d = f.create_group("entry_1/instrument_1/detector_1")
      d["distance"] = distance_m
      d["x_pixel_size"] = d["y_pixel_size"] = pixel_m
      if corner_m is not None:
        d["corner_position"] = corner_m
      if basis_m is not None:
        d["basis_vectors"] = basis_m
      f["entry_1/instrument_1/source_1/energy"] = _HC_J_NM / 13.5
  return path


def _spot_counts(shape, centre, pixel_um, distance_mm, spot, sigma,
                 background=50.0):
  """Counts on a flat detector: a background and an elongated spot in the
  cross-section, times each pixel's solid angle relative to the beam axis,
  cos(2 theta)^3."""
  rows, cols = np.mgrid[:shape[0], :shape[1]]
  per_sr = background + 1e5 * np.exp(
      -0.5 * (((rows - spot[0]) / sigma[0])**2
              + ((cols - spot[1]) / sigma[1])**2))
  r_mm = np.hypot((rows - centre[0]) * pixel_um * 1e-3,
                  (cols - centre[1]) * pixel_um * 1e-3)
  return per_sr * np.cos(np.arctan(r_mm / distance_mm))**3


def test_load_many_maps_a_flat_detector_onto_the_given_geometry(tmp_path):
  """A model on another grid (64 pixels of twice the paper's q step) gets
  flat-detector frames on its own q grid, not on the paper's."""
  g = Geometry(n_voxels=32, box_nm=318.75 / 2, detector_px=64,
               q_step_per_nm=2 * (2 * math.pi / 850))
  shape, centre, pixel_um, distance_mm = (150, 110), (60.0, 70.0), 300.0, 25.0
  spot = (95.0, 50.0)
  counts = _spot_counts(shape, centre, pixel_um, distance_mm, spot, (2, 5))
  np.save(tmp_path / "shot.npy", counts)
  det = {"distance_mm": distance_mm, "pixel_um": pixel_um,
         "centre_px": centre}
  (frame,), bad = measured.load_many([tmp_path / "shot.npy"], detector=det,
                                     geometry=g)
  assert not bad and frame.pattern.shape == frame.valid.shape == (64, 64)
  # The mapping is detector.to_q_grid onto g, then the log of counts.
  inten, valid = det_lib.to_q_grid(
      counts, np.ones(shape, bool),
      det_lib.FlatDetector(distance_mm, pixel_um, centre, 13.5), g)
  np.testing.assert_array_equal(frame.valid, valid)
  want = np.log(inten + measured.COUNTS_DARK)
  want = (want - want[valid].min()) / (want[valid].max() - want[valid].min())
  np.testing.assert_allclose(frame.pattern[valid], want[valid], atol=1e-6)
  # The spot on g's grid, by hand: q / (2 dq_paper) from the centre pixel 32.
  qy, qx = hand_q(*spot, centre, pixel_um, distance_mm, 13.5)
  peak = np.unravel_index(np.argmax(frame.pattern), (64, 64))
  want_peak = (32 + qy / g.q_step_per_nm, 32 + qx / g.q_step_per_nm)
  assert np.max(np.abs(np.subtract(peak, want_peak))) <= 1
  # The paper's grid (the default) is another mapping.
  (paper,), _ = measured.load_many([tmp_path / "shot.npy"], detector=det)
  assert paper.pattern.shape == (128, 128)


def test_cxi_geometry_mask_and_spot_land_where_cxi_puts_them(tmp_path):
  """A rectangular detector with the beam off its middle, described by a
  CXI corner position with distinct x and y (CXI's default basis vectors:
  rows along -y, columns along -x), a masked block on one side of the beam
  and a spot on the other. The beam centre, the spot and the masked block
  must land where the CXI definitions and the flat-detector geometry,
  worked out by hand, put them; swapping x and y, transposing or mirroring
  anywhere moves them."""
  shape, pixel_m, distance_m = (100, 160), 100e-6, 0.025
  pixel_um, distance_mm = pixel_m * 1e6, distance_m * 1e3
  centre = (30.0, 110.0)                               # (row, col) of the beam
  # Pixel (r, c) is centred at corner + (r + 1/2) (0, -p) + (c + 1/2) (-p, 0)
  # in (x, y): the beam (x = y = 0) at r = corner_y / p - 1/2, etc.
  corner = [(centre[1] + 0.5) * pixel_m, (centre[0] + 0.5) * pixel_m,
            distance_m]
  spot = (70.0, 80.0)                          # after the beam row, before col
  counts = _spot_counts(shape, centre, pixel_um, distance_mm, spot, (1.5, 5))
  mask = np.zeros(shape, np.uint16)
  block = (slice(5, 25), slice(125, 155))     # before the beam row, after col
  mask[block] = 1                                      # CXI bit 0: invalid
  path = _write_cxi(tmp_path / "rect.cxi", counts, mask=mask, pixel_m=pixel_m,
                    distance_m=distance_m, corner_m=corner)
  pat, valid, info = measured.load_measurement(path, return_info=True)
  assert info["detector"]["centre_px"] == pytest.approx(centre)
  assert info["detector"]["source"]["centre_px"] == "file"

  g = Geometry()
  m, dq = g.detector_px, g.q_step_per_nm
  qy, qx = hand_q(*spot, centre, pixel_um, distance_mm, 13.5)
  peak = np.unravel_index(np.argmax(pat), pat.shape)
  assert qy > 0 > qx and peak[0] > m // 2 > peak[1]
  assert np.max(np.abs(np.subtract(peak, (m // 2 + qy / dq,
                                          m // 2 + qx / dq)))) <= 1
  # Where every model pixel looks on the detector, by hand.
  row, col = hand_pixel(*g.q_grid, centre, pixel_um, distance_mm, 13.5)
  margin = 3                     # detector pixels: about a model pixel
  inside = ((row > block[0].start + margin) & (row < block[0].stop - margin)
            & (col > block[1].start + margin) & (col < block[1].stop - margin))
  far = ~((row > block[0].start - margin) & (row < block[0].stop + margin)
          & (col > block[1].start - margin) & (col < block[1].stop + margin))
  covered = ((row > margin) & (row < shape[0] - margin) & (col > margin)
             & (col < shape[1] - margin) & g.ewald_mask)
  assert inside.sum() >= 6 and not valid[inside].any()   # the masked block
  assert valid[covered & far].all()                      # everything else
  assert not valid[~covered & far & ((row < -margin) | (col < -margin)
                                     | (row > shape[0] + margin)
                                     | (col > shape[1] + margin))].any()


#: Every CXI pixel-mask bit and whether it makes a pixel invalid here (CXI
#: file format 1.6, Detector and Image ``mask``; Cheetah's bits, which
#: follow CXI, where CXI has none): the property it marks and the decision.
CXI_MASK_BITS = {
    0: ("invalid", True),
    1: ("saturated", True),                 # the count is clipped
    2: ("hot", True),
    3: ("dead", True),
    4: ("shadowed", True),                  # e.g. by the beam stop
    5: ("in the peak mask", False),         # marks pixels for peak finding
    6: ("to be ignored", True),
    7: ("bad", True),
    8: ("outside the resolution limits", False),  # a hit finder's range
    9: ("missing", True),                   # a gap between modules
    10: ("noisy", True),
    11: ("artifact corrected", False),
    12: ("signal above background", False),  # Cheetah: correction failed
    13: ("peak for the hit finder", False),
    14: ("photon background corrected", False),
    15: ("no standard meaning", False),
    16: ("inside the support", False),      # Image class
    31: ("user bit", False),
}


def test_the_bad_pixel_bits_are_those_listed_here():
  assert set(measured.CXI_BAD_PIXEL_BITS) == {
      bit for bit, (_, bad) in CXI_MASK_BITS.items() if bad}


@pytest.mark.parametrize("bit", sorted(CXI_MASK_BITS),
                         ids=lambda b: f"{b}-{CXI_MASK_BITS[b][0]}")
def test_each_cxi_mask_bit(tmp_path, bit):
  name, bad = CXI_MASK_BITS[bit]
  rng = np.random.default_rng(100 + bit)
  counts = rng.poisson(50.0, (128, 128)).astype(np.int32)
  mask = np.zeros((128, 128), np.uint32)
  mask[10:14, 20:30] = np.uint32(1) << bit
  mask[100, 100] = 1                        # a control: bit 0, always bad
  path = _write_cxi(tmp_path / "bit.cxi", counts, mask=mask)
  _, valid = measured.load_measurement(path)
  assert not valid[100, 100] and valid[50:90].all()
  marked = valid[10:14, 20:30]
  if bad:
    assert not marked.any(), f"bit {bit} ({name}) marks a bad pixel"
  else:
    assert marked.all(), f"bit {bit} ({name}) leaves the pixel valid"


def test_masks_that_are_not_bit_fields():
  """Boolean and floating-point masks: any non-zero value is bad."""
  m = np.array([[0, 1], [32, 0.5]])
  np.testing.assert_array_equal(measured.cxi_valid(m), [[1, 0], [0, 0]])
  np.testing.assert_array_equal(measured.cxi_valid(m != 0), [[1, 0], [0, 0]])
  np.testing.assert_array_equal(measured.cxi_valid(m.astype(np.int8)),
                                [[1, 0], [1, 1]])    # 32: peak mask; 0.5 -> 0


def test_cxi_basis_vectors_are_read_from_the_file(tmp_path):
  """The file's basis_vectors place the beam (here: turned by 90 degrees
  about the beam, rows along +x, columns along -y); a mirrored detector
  image is refused in one sentence."""
  p, shape = 150e-6, (120, 90)
  counts = np.random.default_rng(7).poisson(200.0, shape)
  turned = _write_cxi(tmp_path / "turned.cxi", counts, pixel_m=p,
                      distance_m=0.03, corner_m=[-50.5 * p, 40.5 * p, 0.03],
                      basis_m=[[p, 0, 0], [0, -p, 0]])
  mirrored = _write_cxi(tmp_path / "mirrored.cxi", counts, pixel_m=p,
                        distance_m=0.03, corner_m=[-40.5 * p, 50.5 * p, 0.03],
                        basis_m=[[0, -p, 0], [p, 0, 0]])
  good, bad = measured.load_many([turned, mirrored])
  assert [g.stem for g in good] == ["turned"]
  assert good[0].info["detector"]["centre_px"] == pytest.approx((50.0, 40.0))
  assert len(bad) == 1 and "mirrored" in bad[0][1] and "\n" not in bad[0][1]
