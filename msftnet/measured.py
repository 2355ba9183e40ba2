"""Measured patterns in: PNG, ``.npy`` and HDF5/CXI files -> (pattern, valid).

``load_measurement(path, mask=None, experimental=False)`` returns the pattern
``[128, 128]`` float32 in [0, 1] and the valid-pixel mask ``[128, 128]`` bool
that :mod:`msftnet.reconstruct` and :mod:`msftnet.fitting` take.

* PNG: RGB/RGBA channel 1, 8- or 16-bit grayscale (``paper_io.read_pattern``).
* ``.npy``: a 2D array.
* HDF5 / CXI (``.h5``, ``.hdf5``, ``.cxi``): the dataset ``entry_1/data_1/data``
  (a leading frame axis of length 1 is dropped) and, where present,
  ``entry_1/data_1/mask`` (CXI convention: non-zero marks a *bad* pixel).
* ``mask``: an extra file (PNG or ``.npy``) whose non-zero pixels are *valid*;
  combined with the file's own mask.
* ``experimental=True``: the paper's experimental images (Barke et al. 2015,
  a colour map rendered to grayscale) - undo the colour map with the paper's
  piecewise-linear map (``undo_colormap``) and take zero pixels as invalid
  (outside the detector, the central hole).

* ``input_scale`` says what the numbers are. ``"log"``: already a
  normalised log pattern in [0, 1] (the paper's PNGs; anything outside [0, 1]
  is an error, never silently rescaled). ``"counts"``: photon counts or
  intensities (>= 0), turned into the model's pattern ``log(I + 1)``
  min-max normalised *inside the valid pixels* (a masked hot pixel does not
  set the scale; the refinement fits the dark level anyway). ``"auto"``
  (default): PNG images are log patterns; ``.npy``/HDF5 data are counts when
  their dtype is an integer or their maximum exceeds 1, else log patterns.
  The decision and its reason come back with ``return_info=True`` and land
  in the launchers' JSON. Reading counts linearly would show the network and
  the refinement only the central speckle and give a ball with a good loss.

Every failure is a ``ValueError`` with one sentence naming the file and what
was expected (also: negative counts, a constant pattern inside the valid
pixels).
"""

from __future__ import annotations

import os

import numpy as np

from msftnet import paper_io

__all__ = ["load_measurement", "load_many", "stem_of", "read_mask",
           "undo_colormap", "prepare_pattern", "DETECTOR_PX", "HDF5_SUFFIXES",
           "INPUT_SCALES"]

INPUT_SCALES = ("auto", "counts", "log")

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
  return data, valid


def prepare_pattern(data, valid, *, input_scale: str = "auto",
                    image: bool = False, name: str = "pattern"):
  """Raw detector numbers -> ``(pattern in [0, 1], info)`` (module docstring).

  Args:
    data: ``[M, M]`` real array (any dtype).
    valid: ``[M, M]`` bool mask of usable pixels.
    input_scale: ``"auto"``, ``"counts"`` or ``"log"``.
    image: the data came from an image file (auto: a log pattern).
    name: how errors name the input.
  """
  if input_scale not in INPUT_SCALES:
    raise ValueError(f"{name}: input_scale must be one of "
                     f"{', '.join(INPUT_SCALES)}, got {input_scale!r}.")
  raw = np.asarray(data)
  x = raw.astype(np.float64)
  inside = x[valid]
  lo, hi = float(inside.min()), float(inside.max())
  if input_scale == "auto":
    if image:
      input_scale, reason = "log", "an image file holds a normalised log pattern"
    elif np.issubdtype(raw.dtype, np.integer):
      input_scale, reason = "counts", f"integer data ({raw.dtype})"
    elif hi > 1.0:
      input_scale, reason = "counts", f"values up to {hi:.4g} > 1"
    else:
      input_scale, reason = "log", "float values within [0, 1]"
  else:
    reason = "given"
  if hi == lo:
    raise ValueError(f"{name}: the pattern is constant ({lo:.4g}) inside the "
                     "valid pixels, expected a scattering pattern.")
  if input_scale == "log":
    if lo < 0 or hi > 1:
      raise ValueError(f"{name}: values span [{lo:.4g}, {hi:.4g}], expected "
                       "a normalised log pattern in [0, 1] (use input_scale "
                       "counts for photon counts or intensities).")
    pattern = x
  else:
    if lo < 0:
      raise ValueError(f"{name}: {np.count_nonzero(inside < 0)} valid pixels "
                       f"are negative (down to {lo:.4g}), expected photon "
                       "counts or intensities >= 0.")
    logs = np.log(np.maximum(x, 0.0) + 1.0)
    l_lo, l_hi = float(logs[valid].min()), float(logs[valid].max())
    pattern = np.clip((logs - l_lo) / (l_hi - l_lo), 0.0, 1.0)
  info = {"input_scale": input_scale, "input_scale_reason": reason,
          "input_range": [lo, hi]}
  return np.where(valid, pattern, 0.0).astype(np.float32), info


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


def load_measurement(path, *, mask=None, experimental: bool = False,
                     input_scale: str = "auto", return_info: bool = False):
  """Read one pattern and its valid mask (see the module docstring).

  Args:
    path: PNG, ``.npy``, or HDF5/CXI file.
    mask: optional mask file path or boolean array ``[128, 128]`` (True = valid).
    experimental: undo the paper's colour map and treat zero pixels as invalid.
    input_scale: ``"auto"``, ``"counts"`` or ``"log"`` (module docstring).
    return_info: also return a dict with the scale decision.

  Returns:
    ``(pattern [128, 128] float32 in [0, 1], valid [128, 128] bool)`` (and
    ``info``); pixels outside ``valid`` are set to 0.
  """
  path = os.fspath(path)
  valid = None
  image = False
  if path.lower().endswith(HDF5_SUFFIXES):
    if not os.path.exists(path):
      raise ValueError(f"{path}: no such file.")
    pattern, valid = _read_hdf5(path)
  else:
    pattern = paper_io.read_pattern(path)
    image = not path.endswith(".npy")
  pattern = np.asarray(pattern)
  if pattern.shape != (DETECTOR_PX, DETECTOR_PX):
    raise ValueError(f"{path}: pattern has shape {pattern.shape}, expected "
                     f"({DETECTOR_PX}, {DETECTOR_PX}) detector pixels.")
  if not np.issubdtype(pattern.dtype, np.number) or np.iscomplexobj(pattern):
    raise ValueError(f"{path}: the pattern has dtype {pattern.dtype}, "
                     "expected real numbers.")
  if not np.all(np.isfinite(pattern)):
    raise ValueError(f"{path}: the pattern contains NaN or infinite values, "
                     "expected finite numbers.")
  if valid is None:
    valid = np.ones(pattern.shape, bool)
  if experimental:
    valid &= pattern > 0
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
  pattern, info = prepare_pattern(pattern, valid, input_scale=input_scale,
                                  image=image, name=path)
  if experimental:
    pattern = np.where(valid, undo_colormap(pattern), 0.0).astype(np.float32)
  return (pattern, valid, info) if return_info else (pattern, valid)


def stem_of(path) -> str:
  """``DIR/NAME.ext`` -> ``NAME`` (the output file stem of an input)."""
  return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def load_many(paths, *, mask=None, experimental: bool = False,
              input_scale: str = "auto"):
  """Read several inputs; a bad one does not stop the others.

  Returns:
    ``good``: ``[(stem, path, pattern, valid, info)]``; ``bad``: ``[(path, error
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
      pattern, valid, info = load_measurement(
          path, mask=mask, experimental=experimental,
          input_scale=input_scale, return_info=True)
    except ValueError as e:
      bad.append((path, str(e)))
      continue
    stems.add(stem)
    good.append((stem, path, pattern, valid, info))
  return good, bad
