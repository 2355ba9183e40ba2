"""Measured patterns in: PNG, ``.npy`` and HDF5/CXI files -> (pattern, valid).

``load_measurement(path, mask=None, experimental=False)`` returns the pattern
``[128, 128]`` float32 in [0, 1] and the valid-pixel mask ``[128, 128]`` bool
that :mod:`msftnet.reconstruct` and :mod:`msftnet.fitting` take.

* PNG: RGB/RGBA channel 1, 8- or 16-bit grayscale (``paper_io.read_pattern``).
* ``.npy``: a 2D float array; values are min-max normalised to [0, 1] when
  they leave that range (e.g. raw photon counts are *not* log-scaled here:
  give the normalised log pattern).
* HDF5 / CXI (``.h5``, ``.hdf5``, ``.cxi``): the dataset ``entry_1/data_1/data``
  (a leading frame axis of length 1 is dropped) and, where present,
  ``entry_1/data_1/mask`` (CXI convention: non-zero marks a *bad* pixel).
* ``mask``: an extra file (PNG or ``.npy``) whose non-zero pixels are *valid*;
  combined with the file's own mask.
* ``experimental=True``: the paper's experimental images (Barke et al. 2015,
  a colour map rendered to grayscale) - undo the colour map with the paper's
  piecewise-linear map (``undo_colormap``) and take zero pixels as invalid
  (outside the detector, the central hole).

Every failure is a ``ValueError`` with one sentence naming the file and what
was expected.
"""

from __future__ import annotations

import os

import numpy as np

from msftnet import paper_io

__all__ = ["load_measurement", "load_many", "stem_of", "read_mask", "undo_colormap", "DETECTOR_PX",
           "HDF5_SUFFIXES"]

DETECTOR_PX = 128
HDF5_SUFFIXES = (".h5", ".hdf5", ".cxi")
CXI_DATA = "entry_1/data_1/data"
CXI_MASK = "entry_1/data_1/mask"


def undo_colormap(x) -> np.ndarray:
  """The paper's inverse of the experimental images' colour map on [0, 1].

  Piecewise linear: ``0.38/0.3 x`` up to 0.3, ``0.38 + 0.25/0.4 (x - 0.3)`` up
  to 0.88, ``0.7425 + (1 - 0.7425)/(1 - 0.88) (x - 0.88)`` up to 1.
  """
  x = np.asarray(x, np.float64)
  out = np.where(
      x <= 0.3, 0.38 / 0.3 * x,
      np.where(x <= 0.88, 0.38 + 0.25 / 0.4 * (x - 0.3),
               0.7425 + (1 - 0.7425) / (1 - 0.88) * (x - 0.88)))
  return np.clip(out, 0.0, 1.0).astype(np.float32)


def _read_hdf5(path: str) -> tuple[np.ndarray, np.ndarray | None]:
  import h5py
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(f"{path}: not a readable HDF5/CXI file ({e}).") from None
  with f:
    if CXI_DATA not in f:
      raise ValueError(f"{path}: no dataset {CXI_DATA!r}, expected a CXI file "
                       "with the pattern there.")
    data = np.asarray(f[CXI_DATA][()])
    bad = np.asarray(f[CXI_MASK][()]) if CXI_MASK in f else None
  if data.ndim == 3 and data.shape[0] == 1:
    data = data[0]
  if bad is not None and bad.ndim == 3 and bad.shape[0] == 1:
    bad = bad[0]
  if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
    raise ValueError(f"{path}: {CXI_DATA} has dtype {data.dtype}, expected "
                     "real numbers.")
  valid = None if bad is None else (bad == 0)
  return data.astype(np.float32), valid


def read_mask(path) -> np.ndarray:
  """A valid-pixel mask from PNG or ``.npy`` (non-zero = valid)."""
  path = os.fspath(path)
  if path.endswith(".npy"):
    m = paper_io._load_npy(path, "mask")
  else:
    img = paper_io._open_image(path)
    m = img[..., 1] if img.ndim == 3 else img
  m = np.asarray(m)
  if m.shape != (DETECTOR_PX, DETECTOR_PX):
    raise ValueError(f"{path}: mask has shape {m.shape}, expected "
                     f"({DETECTOR_PX}, {DETECTOR_PX}).")
  return m != 0


def load_measurement(path, *, mask=None, experimental: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Read one pattern and its valid mask (see the module docstring).

  Args:
    path: PNG, ``.npy``, or HDF5/CXI file.
    mask: optional mask file path or boolean array ``[128, 128]`` (True = valid).
    experimental: undo the paper's colour map and treat zero pixels as invalid.

  Returns:
    ``(pattern [128, 128] float32 in [0, 1], valid [128, 128] bool)``; pixels
    outside ``valid`` are set to 0.
  """
  path = os.fspath(path)
  valid = None
  if path.lower().endswith(HDF5_SUFFIXES):
    if not os.path.exists(path):
      raise ValueError(f"{path}: no such file.")
    pattern, valid = _read_hdf5(path)
  else:
    pattern = paper_io.read_pattern(path)
  if pattern.shape != (DETECTOR_PX, DETECTOR_PX):
    raise ValueError(f"{path}: pattern has shape {pattern.shape}, expected "
                     f"({DETECTOR_PX}, {DETECTOR_PX}) detector pixels.")
  if not np.all(np.isfinite(pattern)):
    raise ValueError(f"{path}: the pattern contains NaN or infinite values, "
                     "expected finite numbers.")
  if valid is None:
    valid = np.ones(pattern.shape, bool)
  lo, hi = float(pattern.min()), float(pattern.max())
  if lo < 0 or hi > 1:
    pattern = (pattern - lo) / (hi - lo) if hi > lo else np.zeros_like(pattern)
  if experimental:
    valid &= pattern > 0
    pattern = undo_colormap(pattern)
  if mask is not None:
    extra = read_mask(mask) if isinstance(mask, (str, os.PathLike)) else (
        np.asarray(mask, bool))
    if extra.shape != pattern.shape:
      raise ValueError(f"mask has shape {extra.shape}, expected "
                       f"{pattern.shape}.")
    valid &= extra
  if not valid.any():
    raise ValueError(f"{path}: the valid-pixel mask leaves no pixel, expected "
                     "at least one valid detector pixel.")
  pattern = np.where(valid, pattern, 0.0).astype(np.float32)
  return pattern, valid


def stem_of(path) -> str:
  """``DIR/NAME.ext`` -> ``NAME`` (the output file stem of an input)."""
  return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def load_many(paths, *, mask=None, experimental: bool = False):
  """Read several inputs; a bad one does not stop the others.

  Returns:
    ``good``: ``[(stem, path, pattern, valid)]``; ``bad``: ``[(path, error
    sentence)]``. Two inputs with the same stem are an error for the second
    (their outputs would overwrite each other).
  """
  good, bad, stems = [], [], set()
  for path in paths:
    stem = stem_of(path)
    if stem in stems:
      bad.append((path, f"{path}: another input already has the name "
                  f"{stem!r}; its outputs would overwrite the first's."))
      continue
    try:
      pattern, valid = load_measurement(path, mask=mask,
                                        experimental=experimental)
    except ValueError as e:
      bad.append((path, str(e)))
      continue
    stems.add(stem)
    good.append((stem, path, pattern, valid))
  return good, bad
