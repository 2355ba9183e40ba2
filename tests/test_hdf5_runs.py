"""Runs as facilities write them: compressed HDF5, virtual datasets over
several files, and a pick of frames (``--frames``)."""

import os

import h5py
import hdf5plugin
import numpy as np
import pytest

from msftnet import measured


def _run(n: int, seed: int = 5) -> np.ndarray:
  """``n`` distinct Poisson frames of a speckled blob, uint16 counts."""
  rng = np.random.default_rng(seed)
  r = np.hypot(*np.mgrid[-64:64, -64:64])
  frames = []
  for k in range(n):
    inten = 1e4 * np.exp(-r / (6.0 + k)) * (1.5 + np.cos(r / (2.0 + 0.3 * k)))
    frames.append(rng.poisson(inten))
  return np.asarray(frames, np.uint16)


def _write(path, frames, **dataset_kwargs):
  with h5py.File(path, "w") as f:
    f.create_dataset("entry_1/data_1/data", data=frames,
                     chunks=(1,) + frames.shape[1:], **dataset_kwargs)
    mask = np.zeros(frames.shape[1:], np.uint16)
    mask[60:68, :] = 1 << 9                       # a module gap
    f["entry_1/data_1/mask"] = mask


FILTERS = {
    "bitshuffle-lz4": lambda: hdf5plugin.Bitshuffle(cname="lz4"),
    "blosc": lambda: hdf5plugin.Blosc(cname="zstd", clevel=5),
    "zstd": lambda: hdf5plugin.Zstd(),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_compressed_runs_read_as_the_uncompressed_run(tmp_path, name):
  frames = _run(6)
  _write(tmp_path / "plain.cxi", frames)
  _write(tmp_path / "packed.cxi", frames, **FILTERS[name]())
  with h5py.File(tmp_path / "packed.cxi") as f:     # really compressed
    plist = f["entry_1/data_1/data"].id.get_create_plist()
    ids = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    assert FILTERS[name]().filter_id in ids
  assert (os.path.getsize(tmp_path / "packed.cxi")
          < 0.8 * os.path.getsize(tmp_path / "plain.cxi"))
  plain, bad_p = measured.load_many([tmp_path / "plain.cxi"])
  packed, bad_c = measured.load_many([tmp_path / "packed.cxi"])
  assert not bad_p and not bad_c and len(packed) == 6
  for a, b in zip(plain, packed):
    assert b.stem == a.stem.replace("plain", "packed")
    np.testing.assert_array_equal(a.pattern, b.pattern)
    np.testing.assert_array_equal(a.valid, b.valid)
  assert not packed[0].valid[60:68].any()


def _vds(tmp_path, frames, split):
  """A CXI file whose frames live in ``len(split) + 1`` source files."""
  bounds = [0, *split, len(frames)]
  layout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
  for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
    name = f"source{i}.h5"
    with h5py.File(tmp_path / name, "w") as f:
      f["data"] = frames[lo:hi]
    layout[lo:hi] = h5py.VirtualSource(name, "data", shape=frames[lo:hi].shape)
  path = tmp_path / "virtual.cxi"
  with h5py.File(path, "w") as f:
    f.create_virtual_dataset("entry_1/data_1/data", layout, fillvalue=0)
  return path


def test_a_virtual_dataset_over_two_files_reads_frame_by_frame(
    tmp_path, monkeypatch):
  frames = _run(6, seed=8)
  np.save(tmp_path / "direct.npy", frames[4])
  path = _vds(tmp_path, frames, [3])
  monkeypatch.chdir("/")                 # sources are found beside the file
  good, bad = measured.load_many([path])
  assert not bad and [g.stem for g in good] == [
      f"virtual_frame{k}" for k in range(6)]
  direct, _ = measured.load_many([tmp_path / "direct.npy"])
  np.testing.assert_array_equal(good[4].pattern, direct[0].pattern)
  # A missing source is an error for its frames only, not silent fill values.
  os.remove(tmp_path / "source1.h5")
  good, bad = measured.load_many([path])
  assert [g.stem for g in good] == ["virtual_frame0", "virtual_frame1",
                                    "virtual_frame2"]
  assert len(bad) == 3 and all("source1.h5" in msg and "missing" in msg
                               for _, msg in bad)


def test_read_frames_streams_one_frame_at_a_time(tmp_path):
  path = _vds(tmp_path, _run(6, seed=9), [2, 4])
  refs, bad = measured.frame_refs([path])
  assert not bad and len(refs) == 6
  stream = measured.read_frames(refs)
  first = next(stream)                   # nothing else read yet
  assert first.stem == "virtual_frame0"
  os.remove(tmp_path / "source2.h5")     # frames 4, 5: gone after the start
  rest = list(stream)
  assert [r.stem for r in rest[:3]] == [f"virtual_frame{k}" for k in (1, 2, 3)]
  assert all(isinstance(r, tuple) for r in rest[3:]) and len(rest) == 5


def test_frames_spec_picks_frames_and_keeps_their_numbers(tmp_path):
  frames = _run(10, seed=2)
  _write(tmp_path / "run.cxi", frames)
  good, bad = measured.load_many([tmp_path / "run.cxi"], frames="0:3,7,-1")
  assert not bad
  assert [g.stem for g in good] == ["run_frame0", "run_frame1", "run_frame2",
                                    "run_frame7", "run_frame9"]
  assert [g.info["frame"] for g in good] == [0, 1, 2, 7, 9]
  every, _ = measured.load_many([tmp_path / "run.cxi"])
  np.testing.assert_array_equal(good[3].pattern, every[7].pattern)
  # A single pattern is always taken; a frame the run lacks is an error for
  # that run only.
  np.save(tmp_path / "single.npy", frames[0])
  good, bad = measured.load_many([tmp_path / "run.cxi", tmp_path / "single.npy"],
                                 frames="12")
  assert [g.stem for g in good] == ["single"]
  assert len(bad) == 1 and "frame 12" in bad[0][1] and "10 frames" in bad[0][1]


@pytest.mark.parametrize("spec, n, want", [
    (None, 3, [0, 1, 2]), ("", 2, [0, 1]), ("1:", 4, [1, 2, 3]),
    (":2,3", 5, [0, 1, 3]), ("4,0:2,1", 6, [0, 1, 4]), ("-2:", 5, [3, 4]),
    ("0:100", 3, [0, 1, 2])])
def test_parse_frames(spec, n, want):
  assert measured.parse_frames(spec)(n) == want


@pytest.mark.parametrize("spec", ["a", "1:2:3", "1-4", "0:x"])
def test_a_malformed_frames_spec_is_one_sentence(spec):
  with pytest.raises(ValueError, match="--frames"):
    measured.parse_frames(spec)


@pytest.mark.parametrize("spec, n", [("20:30", 10), ("5:2", 10),
                                     ("-3:-5", 4)])
def test_a_range_that_holds_no_frame_is_an_error_not_an_empty_run(spec, n):
  with pytest.raises(ValueError, match=r"^frames .* hold none of the run's "
                     rf"{n} frames \(0 to {n - 1}\)\.$"):
    measured.parse_frames(spec)(n)
