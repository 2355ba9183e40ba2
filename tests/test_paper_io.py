"""Tests of the paper's file formats (msftnet.paper_io)."""

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from msftnet import paper_io

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "paper"
VOL16 = FIXTURES / "real" / "14" / "139903r.png"
VOL8 = FIXTURES / "real" / "1" / "1r.png"
PAT = FIXTURES / "scatter" / "14" / "139903s.png"


def test_reads_both_volume_formats():
  for path, mode in [(VOL16, "I;16"), (VOL8, "RGBA")]:
    assert Image.open(path).mode == mode
    vol = paper_io.read_density(path)
    assert vol.shape == (192, 192, 192) and vol.dtype == np.float32
    assert set(np.unique(vol)) == {0.0, 1.0}
    assert 0.001 < vol.mean() < 0.5
    # The box edges are empty: the solid lies inside.
    assert vol[:, 0].max() == 0 and vol[:, :, 0].max() == 0


def test_volume_orientation_is_the_paper_tiles_rotated_about_the_beam():
  raw = np.asarray(Image.open(VOL16)).astype(np.float64)
  tile_5 = 1 - raw[0:192, 5 * 192:6 * 192] / 65535      # row 0, column 5
  tile_17 = 1 - raw[192:384, 1 * 192:2 * 192] / 65535   # row 1, column 1
  vol = paper_io.read_density(VOL16)
  np.testing.assert_array_equal(vol[5], tile_5[::-1, ::-1])
  np.testing.assert_array_equal(vol[17], tile_17[::-1, ::-1])


def test_density_round_trips(tmp_path):
  vol = paper_io.read_density(VOL8)
  paper_io.write_density(tmp_path / "v8.png", vol, bits=8)
  # Byte-for-byte the paper's pixels.
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "v8.png")),
                                np.asarray(Image.open(VOL8)))
  np.testing.assert_array_equal(paper_io.read_density(tmp_path / "v8.png"), vol)
  grey = np.random.default_rng(0).integers(0, 65536, (64, 64, 64)) / 65535.0
  paper_io.write_density(tmp_path / "g.png", grey)
  assert Image.open(tmp_path / "g.png").size == (8 * 64, 8 * 64)
  back = paper_io.read_density(tmp_path / "g.png")
  np.testing.assert_allclose(back, grey, rtol=0, atol=1e-6)
  # Quantised values survive any number of further round trips exactly.
  paper_io.write_density(tmp_path / "g2.png", back)
  np.testing.assert_array_equal(paper_io.read_density(tmp_path / "g2.png"), back)
  assert (tmp_path / "g2.png").read_bytes() == (tmp_path / "g.png").read_bytes()
  paper_io.write_density(tmp_path / "g.npy", grey)
  np.testing.assert_array_equal(paper_io.read_density(tmp_path / "g.npy"),
                                grey.astype(np.float32))


def test_pattern_round_trips(tmp_path):
  pat = paper_io.read_pattern(PAT)
  assert pat.shape == (128, 128) and pat.min() == 0 and pat.max() == 1
  paper_io.write_pattern(tmp_path / "p.png", pat)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.png")),
                                np.asarray(Image.open(PAT)))
  np.testing.assert_array_equal(paper_io.read_pattern(tmp_path / "p.png"), pat)
  fine = np.random.default_rng(1).integers(0, 65536, (128, 128)) / 65535.0
  paper_io.write_pattern(tmp_path / "p16.png", fine, bits=16)
  assert Image.open(tmp_path / "p16.png").mode == "I;16"
  back = paper_io.read_pattern(tmp_path / "p16.png")
  np.testing.assert_array_equal(back, fine.astype(np.float32))
  paper_io.write_pattern(tmp_path / "p16b.png", back, bits=16)
  assert (tmp_path / "p16b.png").read_bytes() == (tmp_path / "p16.png").read_bytes()
  grey8 = (np.arange(128 * 128).reshape(128, 128) % 256).astype(np.uint8)
  Image.fromarray(grey8).save(tmp_path / "l.png")
  np.testing.assert_array_equal(paper_io.read_pattern(tmp_path / "l.png"),
                                grey8 / np.float32(255))


def test_downsample_block_mean():
  vol = np.zeros((6, 6, 6), np.float32)
  vol[:3, :3, :3] = 1.0
  vol[3, 3, 3] = 1.0
  out = paper_io.downsample(vol, 3)
  assert out.shape == (2, 2, 2)
  assert out[0, 0, 0] == 1.0 and out[1, 1, 1] == pytest.approx(1 / 27)
  assert paper_io.downsample(vol, 3, threshold=0.5).sum() == 1.0
  big = paper_io.read_density(VOL16)
  small = paper_io.downsample(big, 3)
  assert small.shape == (64, 64, 64)
  assert small.mean() == pytest.approx(big.mean(), rel=1e-5)


def _write_bytes(path, data):
  path.write_bytes(data)
  return path


@pytest.mark.parametrize("reader", [paper_io.read_density, paper_io.read_pattern])
def test_unreadable_files_get_one_clear_error(tmp_path, reader):
  with pytest.raises(ValueError, match="no such file"):
    reader(tmp_path / "missing.png")
  with pytest.raises(ValueError, match="the file is empty"):
    reader(_write_bytes(tmp_path / "empty.png", b""))
  with pytest.raises(ValueError, match="not a readable image"):
    reader(_write_bytes(tmp_path / "junk.png", b"this is not a png"))
  with pytest.raises(ValueError, match="not a readable .npy"):
    reader(_write_bytes(tmp_path / "junk.npy", b"nope"))


def test_bad_volumes(tmp_path):
  Image.fromarray(np.zeros((100, 120), np.uint8)).save(tmp_path / "wrong.png")
  with pytest.raises(ValueError, match="not a flattened cubic volume"):
    paper_io.read_density(tmp_path / "wrong.png")
  np.save(tmp_path / "flat.npy", np.zeros((4, 4, 5), np.float32))
  with pytest.raises(ValueError, match="expected a cubic"):
    paper_io.read_density(tmp_path / "flat.npy")
  nan = np.zeros((4, 4, 4), np.float32)
  nan[1, 2, 3] = np.nan
  np.save(tmp_path / "nan.npy", nan)
  with pytest.raises(ValueError, match="1 NaN or infinite values"):
    paper_io.read_density(tmp_path / "nan.npy")
  with pytest.raises(ValueError, match="NaN or infinite"):
    paper_io.write_density(tmp_path / "out.npy", nan)
  with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
    paper_io.write_density(tmp_path / "out.png", np.full((4, 4, 4), 2.0))
  with pytest.raises(ValueError, match="expected a square 2D pattern"):
    np.save(tmp_path / "p.npy", np.zeros((3, 4, 5)))
    paper_io.read_pattern(tmp_path / "p.npy")


def test_writes_are_atomic(tmp_path):
  target = tmp_path / "out.bin"
  with pytest.raises(RuntimeError):
    with paper_io.atomic_write(target) as f:
      f.write(b"half")
      raise RuntimeError("interrupted")
  assert os.listdir(tmp_path) == []
  target.write_bytes(b"old")
  with pytest.raises(RuntimeError):
    with paper_io.atomic_write(target) as f:
      f.write(b"new but broken")
      raise RuntimeError("interrupted")
  assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_keeps_the_umask_and_syncs(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or 0o022)
  real_fsync = os.fsync
  synced = []
  monkeypatch.setattr(os, "fsync",
                      lambda fd: synced.append(fd) or real_fsync(fd))
  with paper_io.atomic_write(tmp_path / "a.txt", "w") as f:
    f.write("data")
  assert (tmp_path / "a.txt").read_text() == "data"
  assert synced, "atomic_write must fsync before the rename"
  if os.path.exists("/proc/self/status"):     # Linux: the umask is read only
    assert calls == []
  mask = paper_io._process_umask()
  assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("name, fmt", [
    ("a.npy", "npy"), ("a.h5", "hdf5"), ("a.HDF5", "hdf5"), ("run.cxi", "hdf5"),
    ("a.png", "image"), ("a.tif", "image"), ("a.NPY", "image"),
    ("npy", "image"), (pathlib.Path("d.x/a.npy"), "npy"),
])
def test_input_format_is_decided_by_the_suffix(name, fmt):
  assert paper_io.input_format(name) == fmt
