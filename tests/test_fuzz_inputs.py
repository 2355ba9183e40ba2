"""Fuzz: hundreds of malformed inputs, each one clear sentence, no traceback.

``measured.load_many`` must turn every unusable input into one line that
names the file (a ``ValueError``), whatever the bytes; any other exception
is a bug in the reader. Inputs that happen to be valid must load as
``[128, 128]`` patterns in [0, 1] with a boolean mask.
"""

import io
import os

import h5py
import numpy as np
from PIL import Image
import pytest

from msftnet import measured

N_PER_KIND = 40                  # 5 kinds: 205 inputs with the missing files


def _random_bytes(rng, d, i):
  suffix = rng.choice([".png", ".npy", ".h5", ".cxi"])
  path = d / f"bytes{i}{suffix}"
  path.write_bytes(rng.bytes(int(rng.integers(0, 600))))
  return path


def _good_png_bytes(rng):
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, (128, 128), dtype=np.uint8)).save(
      buf, format="PNG")
  return buf.getvalue()


def _good_npy_bytes(rng):
  buf = io.BytesIO()
  np.save(buf, rng.random((128, 128)).astype(np.float32))
  return buf.getvalue()


def _truncated(rng, d, i):
  kind = rng.choice(["png", "npy", "cxi"])
  if kind == "cxi":
    full = d / f"full{i}.cxi"
    with h5py.File(full, "w") as f:
      f["entry_1/data_1/data"] = rng.poisson(5.0, (2, 128, 128))
    data = full.read_bytes()
    full.unlink()
  else:
    data = _good_png_bytes(rng) if kind == "png" else _good_npy_bytes(rng)
  path = d / f"trunc{i}.{kind}"
  path.write_bytes(data[:int(rng.integers(0, len(data) - 1))])
  return path


def _bad_array(rng, d, i):
  choice = int(rng.integers(0, 9))
  shape = tuple(int(s) for s in rng.integers(0, 6, int(rng.integers(0, 4))))
  arrays = [
      lambda: rng.random(shape),                               # wrong shape
      lambda: np.full((128, 128), np.nan),
      lambda: np.where(rng.random((128, 128)) < 0.01, np.inf, 1.0),
      lambda: -rng.random((128, 128)) * 10,                    # negative
      lambda: np.zeros((128, 128)),                            # no signal
      lambda: np.full((128, 128), 7.0),                        # constant
      lambda: (rng.random((128, 128)) > 0.5),                  # bool
      lambda: rng.random((128, 128)) + 1j,                     # complex
      lambda: np.array(["a", "b"]),                            # strings
  ]
  path = d / f"array{i}.npy"
  np.save(path, arrays[choice]())
  return path


def _image(rng, d, i):
  mode = rng.choice(["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F",
                     "CMYK"])
  size = (128, 128) if rng.random() < 0.6 else tuple(
      int(s) for s in rng.integers(1, 200, 2))
  img = Image.new(mode, size)
  if mode not in ("1",):
    noise = Image.effect_noise(size, float(rng.uniform(0, 100)))
    img = noise.convert(mode) if mode != "I;16" else img
  path = d / f"image{i}.png"
  try:
    img.save(path)
  except OSError:                       # a mode PNG cannot store
    path = d / f"image{i}.tif"
    img.save(path, format="TIFF")
  return path


def _hdf5(rng, d, i):
  path = d / f"file{i}.cxi"
  choice = int(rng.integers(0, 10))
  with h5py.File(path, "w") as f:
    if choice == 0:
      f["other/data"] = np.ones((128, 128))                    # missing
    elif choice == 1:
      f["entry_1/data_1/data"] = np.ones((2, 3, 128, 128))     # 4D
    elif choice == 2:
      f["entry_1/data_1/data"] = np.array([b"x", b"y"])        # strings
    elif choice == 3:
      f["entry_1/data_1/data"] = np.ones((0, 128, 128))        # no frames
    elif choice == 4:
      f["entry_1/data_1/data"] = rng.poisson(4.0, (128, 128))
      f["entry_1/data_1/mask"] = np.ones((64, 64))             # wrong mask
    elif choice == 5:
      f["entry_1/data_1/data"] = rng.poisson(4.0, (128, 128))
      f["entry_1/data_1/mask"] = np.ones((128, 128))           # all bad
    elif choice == 6:
      f["entry_1/data_1/data"] = rng.poisson(4.0, (200, 200))
      f["entry_1/instrument_1/detector_1/distance"] = 0.03     # no pixel size
    elif choice == 7:
      f.create_group("entry_1/data_1/data")                    # a group
    elif choice == 8:
      f["entry_1/data_1/data"] = rng.poisson(4.0, (300, 300))  # no geometry
    else:
      f["entry_1/data_1/data"] = h5py.SoftLink("/nowhere")     # dangling
  return path


KINDS = (_random_bytes, _truncated, _bad_array, _image, _hdf5)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__.strip("_"))
def test_malformed_inputs_get_one_sentence_each(tmp_path, kind):
  rng = np.random.default_rng(KINDS.index(kind))
  paths = [kind(rng, tmp_path, i) for i in range(N_PER_KIND)]
  paths.append(tmp_path / f"missing_{kind.__name__}.png")
  good, bad = measured.load_many(paths)       # anything but ValueError: bug
  for path, message in bad:
    assert "\n" not in message and str(path) in message, message
  for frame in good:
    assert frame.pattern.shape == (128, 128) and frame.valid.dtype == bool
    assert 0 <= frame.pattern.min() and frame.pattern.max() <= 1
  named = {str(p) for p, _ in bad} | {str(g.path) for g in good}
  assert named == {str(p) for p in paths}      # every input answered
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
