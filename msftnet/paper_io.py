"""Readers and writers for the file formats of Stielow & Scheel (2021).

Formats (``../shared/docs/physics.md`` section 2):

* density volume PNG: an ``N^3`` volume (192^3 in the paper) flattened into a
  grid of ``N x N`` tiles (12 rows x 16 columns for 192^3: a 2304 x 3072
  image); tiles in row-major order are the slices; the density is
  ``1 - value / max`` of channel 0 (8-bit RGBA or 16-bit grayscale). The
  paper's volumes, read in tile order, are rotated by 180 degrees about the
  beam axis with respect to the patterns it simulated from them:
  :func:`read_density` undoes this and returns our convention ``(z, y, x)``,
  beam along +z entering at z = 0, so that ``msftnet.msft`` reproduces the
  stored patterns.
* pattern PNG: 128 x 128, RGB with the pattern in channel 1 / 255 (the
  paper), or 8- / 16-bit grayscale.
* ``.npy``: float arrays in our convention.

:func:`input_format` is the one place where a file's suffix picks its
reader (``.npy``, HDF5/CXI, else an image).

All writers are atomic (a temporary file in the target directory, then
``os.replace``), so an interrupted job never leaves a half-written file.
Bad input raises :class:`ValueError` with one sentence naming the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np
from PIL import Image

__all__ = [
    "input_format",
    "INPUT_FORMATS",
    "HDF5_SUFFIXES",
    "read_density",
    "write_density",
    "read_pattern",
    "read_array",
    "read_image",
    "write_pattern",
    "downsample",
    "tile_grid",
    "atomic_write",
    "save_npy",
]

#: File suffixes read as HDF5/CXI (in any letter case).
HDF5_SUFFIXES = (".h5", ".hdf5", ".cxi")
#: The answers of :func:`input_format`.
INPUT_FORMATS = ("npy", "hdf5", "image")


def input_format(path) -> str:
  """The reader a file's suffix selects: one of :data:`INPUT_FORMATS`.

  ``"hdf5"`` for :data:`HDF5_SUFFIXES` (any letter case), ``"npy"`` for
  ``.npy`` (lower case), ``"image"`` for every other name: a PNG, or any
  image Pillow opens; a file that is none gets the image reader's
  one-sentence error. Writers take ``"npy"`` as ``.npy`` and anything else
  as a PNG.
  """
  path = os.fspath(path)
  if path.lower().endswith(HDF5_SUFFIXES):
    return "hdf5"
  if path.endswith(".npy"):
    return "npy"
  return "image"


# Tiles per row of the flattened volume, by edge length (the paper: 192 -> 16).
_TILE_COLUMNS = {192: 16, 64: 8, 128: 16, 96: 12, 32: 8}


def tile_grid(n: int) -> tuple[int, int]:
  """(rows, columns) of tiles used to flatten an ``n^3`` volume."""
  cols = _TILE_COLUMNS.get(n)
  if cols is None:
    cols = int(np.ceil(np.sqrt(n)))
    while n % cols:
      cols += 1
  return n // cols, cols


_FALLBACK_UMASK: list[int] = []


def _process_umask() -> int:
  """The process umask, read without changing it where the OS allows.

  ``os.umask`` can only be read by setting it, which races with threads
  creating files; Linux reports it in ``/proc/self/status``. Elsewhere it is
  read once that way and remembered.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  if not _FALLBACK_UMASK:
    mask = os.umask(0o022)
    os.umask(mask)
    _FALLBACK_UMASK.append(mask)
  return _FALLBACK_UMASK[0]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
  """Open a temporary file beside ``path``; move it over ``path`` on success.

  The data is flushed to disk (``fsync``) before the rename, so a crash
  leaves either the old file or the complete new one, never a torn one;
  the file gets the usual mode (``0666`` less the umask), and the process
  umask is never changed (other threads may be creating files).
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                             suffix=os.path.splitext(path)[1])
  os.chmod(tmp, 0o666 & ~_process_umask())   # mkstemp's 0600 -> usual mode
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def save_npy(path, array) -> None:
  """Write ``array`` to a ``.npy`` file atomically (float32 as given)."""
  with atomic_write(path) as f:
    np.save(f, np.asarray(array))


def _open_image(path) -> np.ndarray:
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such file.")
  if os.path.getsize(path) == 0:
    raise ValueError(f"{path}: the file is empty, expected a PNG image.")
  try:
    with Image.open(path) as im:
      im.load()
      mode = im.mode
      arr = np.asarray(im)
  except (OSError, SyntaxError) as e:
    raise ValueError(f"{path}: not a readable image ({e}).") from None
  if mode in ("I;16", "I;16B", "I;16L"):
    return arr.astype(np.uint16)
  if mode == "I":               # Pillow may open 16-bit grayscale as int32
    if arr.min() < 0 or arr.max() > 65535:
      raise ValueError(f"{path}: 32-bit integer image with values outside "
                       "[0, 65535], expected an 8- or 16-bit image.")
    return arr.astype(np.uint16)
  if mode in ("L", "RGB", "RGBA", "LA"):
    return arr
  if mode == "P":
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  raise ValueError(f"{path}: unsupported image mode {mode!r}, expected 8-bit "
                   "grayscale/RGB/RGBA or 16-bit grayscale.")


def _full_scale(arr: np.ndarray) -> float:
  return 65535.0 if arr.dtype == np.uint16 else 255.0


def _load_npy(path, what: str) -> np.ndarray:
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such file.")
  try:
    arr = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable .npy {what} ({e}).") from None
  if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
    raise ValueError(f"{path}: expected a real numeric {what}, got dtype "
                     f"{arr.dtype}.")
  return arr.astype(np.float32)


def read_image(path) -> np.ndarray:
  """A PNG's pixels as stored (8/16-bit; palette images as RGB); errors name
  the file."""
  return _open_image(path)


def read_array(path, what: str = "pattern") -> np.ndarray:
  """A real numeric ``.npy`` array as float32 (any shape; errors name it)."""
  return _load_npy(path, what)


def _check_finite(arr: np.ndarray, path, what: str) -> None:
  if not np.all(np.isfinite(arr)):
    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
    raise ValueError(f"{path}: the {what} contains {bad} NaN or infinite "
                     "values, expected finite numbers.")


# ----------------------------------------------------------------- densities
def read_density(path) -> np.ndarray:
  """Read a density volume in our convention.

  Args:
    path: a ``.npy`` file holding ``[N, N, N]`` (z, y, x), or one of the
      paper's flattened PNG volumes (8-bit RGBA or 16-bit grayscale).

  Returns:
    ``[N, N, N]`` float32 in [0, 1] for PNGs, (z, y, x), beam along +z.
  """
  path = os.fspath(path)
  if input_format(path) == "npy":
    vol = _load_npy(path, "density")
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
      raise ValueError(f"{path}: expected a cubic [N, N, N] density, got shape "
                       f"{vol.shape}.")
    _check_finite(vol, path, "density")
    return vol
  img = _open_image(path)
  channel = img[..., 0] if img.ndim == 3 else img
  h, w = channel.shape
  # The tile edge n satisfies (h / n) * (w / n) = n, i.e. n^3 = h * w.
  n = int(round((h * w) ** (1 / 3)))
  rows, cols = tile_grid(n) if n > 0 else (0, 0)
  if n == 0 or n**3 != h * w or (rows * n, cols * n) != (h, w):
    raise ValueError(
        f"{path}: a {w} x {h} image is not a flattened cubic volume; expected "
        "N x N tiles in a (rows x N) by (columns x N) grid with rows x columns "
        "= N, e.g. 3072 x 2304 for 192^3 (12 x 16 tiles).")
  tiles = channel.reshape(rows, n, cols, n).transpose(0, 2, 1, 3)
  tiles = tiles.reshape(n, n, n)
  vol = 1.0 - tiles.astype(np.float32) / np.float32(_full_scale(channel))
  # The paper's volumes are rotated by 180 degrees about the beam axis.
  return np.ascontiguousarray(vol[:, ::-1, ::-1])


def write_density(path, density, *, bits: int = 16) -> None:
  """Write a density ``[N, N, N]`` (z, y, x) atomically.

  ``.npy`` stores float32 exactly. A PNG is the paper's flattened format
  (16-bit grayscale by default, or ``bits=8`` RGBA as the paper's training
  set); :func:`read_density` returns the density quantised to that depth
  (exactly the input when it is binary).
  """
  path = os.fspath(path)
  vol = np.asarray(density, dtype=np.float32)
  if vol.ndim != 3 or len(set(vol.shape)) != 1:
    raise ValueError(f"write_density({path}): expected a cubic [N, N, N] "
                     f"density, got shape {vol.shape}.")
  _check_finite(vol, path, "density")
  if input_format(path) == "npy":
    save_npy(path, vol)
    return
  if bits not in (8, 16):
    raise ValueError(f"write_density({path}): bits must be 8 or 16, got {bits}.")
  if vol.min() < 0 or vol.max() > 1:
    raise ValueError(f"write_density({path}): PNG densities must lie in [0, 1], "
                     f"got [{vol.min():.3g}, {vol.max():.3g}].")
  n = vol.shape[0]
  rows, cols = tile_grid(n)
  tiles = vol[:, ::-1, ::-1]                 # back to the paper's orientation
  scale = 65535 if bits == 16 else 255
  values = np.rint((1.0 - tiles) * scale)
  values = values.reshape(rows, cols, n, n).transpose(0, 2, 1, 3)
  values = values.reshape(rows * n, cols * n)
  if bits == 16:
    image = Image.fromarray(values.astype(np.uint16))
  else:
    v = values.astype(np.uint8)
    rgba = np.stack([v, v, v, np.full_like(v, 255)], axis=-1)
    image = Image.fromarray(rgba)
  with atomic_write(path) as f:
    image.save(f, format="PNG")


def downsample(density, factor: int = 3, *, threshold: float | None = None
               ) -> np.ndarray:
  """Block-mean downsampling of ``[..., N, N, N]`` by ``factor`` per axis.

  The paper's 64^3 training targets are 192^3 volumes reduced this way
  (``factor=3``); ``threshold`` (e.g. 0.5) binarises the result.
  """
  vol = np.asarray(density, dtype=np.float32)
  n = vol.shape[-1]
  if vol.ndim < 3 or vol.shape[-3:] != (n, n, n) or n % factor:
    raise ValueError(f"downsample: expected [..., N, N, N] with N divisible by "
                     f"{factor}, got shape {vol.shape}.")
  m = n // factor
  lead = vol.shape[:-3]
  out = vol.reshape(lead + (m, factor, m, factor, m, factor))
  out = out.mean(axis=(-5, -3, -1))
  if threshold is not None:
    out = (out > threshold).astype(np.float32)
  return out


# ------------------------------------------------------------------ patterns
def read_pattern(path) -> np.ndarray:
  """Read a pattern as float32 ``[M, M]`` in [0, 1].

  PNG: RGB/RGBA -> channel 1 / 255 (the paper's format); 8-bit grayscale
  -> value / 255; 16-bit grayscale -> value / 65535. ``.npy``: returned as
  stored (must be 2D and finite).
  """
  path = os.fspath(path)
  if input_format(path) == "npy":
    pat = read_array(path)
  else:
    img = _open_image(path)
    if img.ndim == 3 and img.shape[-1] == 2:    # grey + alpha: the grey
      channel = img[..., 0]
    else:
      channel = img[..., 1] if img.ndim == 3 else img
    pat = channel.astype(np.float32) / np.float32(_full_scale(channel))
  if pat.ndim != 2 or pat.shape[0] != pat.shape[1] or pat.shape[0] < 2:
    raise ValueError(f"{path}: expected a square 2D pattern, got shape "
                     f"{pat.shape}.")
  _check_finite(pat, path, "pattern")
  return pat


def write_pattern(path, pattern, *, bits: int = 8) -> None:
  """Write a pattern ``[M, M]`` in [0, 1] atomically.

  ``bits=8`` writes the paper's RGB format (the value in every channel),
  ``bits=16`` a 16-bit grayscale PNG; ``.npy`` stores float32 exactly.
  :func:`read_pattern` returns the pattern quantised to that depth.
  """
  path = os.fspath(path)
  pat = np.asarray(pattern, dtype=np.float32)
  if pat.ndim != 2:
    raise ValueError(f"write_pattern({path}): expected a 2D pattern, got shape "
                     f"{pat.shape}.")
  _check_finite(pat, path, "pattern")
  if input_format(path) == "npy":
    save_npy(path, pat)
    return
  if pat.min() < 0 or pat.max() > 1:
    raise ValueError(f"write_pattern({path}): PNG patterns must lie in [0, 1], "
                     f"got [{pat.min():.3g}, {pat.max():.3g}].")
  if bits == 8:
    v = np.rint(pat * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([v, v, v], axis=-1))
  elif bits == 16:
    image = Image.fromarray(np.rint(pat * 65535).astype(np.uint16))
  else:
    raise ValueError(f"write_pattern({path}): bits must be 8 or 16, got {bits}.")
  with atomic_write(path) as f:
    image.save(f, format="PNG")
