"""Measured patterns in: PNG, ``.npy`` and HDF5/CXI files -> (pattern, valid).

``load_measurement(path, mask=None, experimental=False)`` returns the pattern
``[M, M]`` float32 in [0, 1] and the valid-pixel mask ``[M, M]`` bool on the
q grid of ``geometry`` (the model's; default the paper's, ``M = 128``) that
:mod:`msftnet.reconstruct` and :mod:`msftnet.fitting` take;
``load_many(paths, geometry=...)`` reads every frame of several inputs into
:class:`Frame` records. The file's suffix picks the reader
(:func:`msftnet.paper_io.input_format`).

* PNG: RGB/RGBA channel 1, 8- or 16-bit grayscale (``paper_io.read_pattern``).
* ``.npy``: a 2D array.
* HDF5 / CXI (``.h5``, ``.hdf5``, ``.cxi``): frames at
  ``entry_1/data_1/data`` or ``entry_1/instrument_1/detector_1/data`` (soft
  links followed), ``[H, W]`` or a run ``[N, H, W]`` (``load_many`` and the
  launchers take every frame, named ``STEM_frameK``, K from 0;
  ``load_measurement`` takes ``frame=K``); the pixel mask ``mask`` beside the
  data (``[H, W]`` or per frame; a CXI bit field: a pixel with any bit of
  ``CXI_BAD_PIXEL_BITS`` set is invalid, other bits such as the peak mask
  do not make it so); the detector geometry where present
  (``CXI_GEOMETRY``: distance, pixel size, corner position and basis
  vectors, wavelength or photon energy).
* Detector geometry: a pattern recorded on a flat detector (its distance and
  pixel size from the CXI file or the ``detector`` argument) is mapped onto
  the model's q grid with a solid-angle correction
  (:mod:`msftnet.detector`, which states the orientation convention);
  model pixels the detector does not cover become invalid. The beam centre
  is the ``detector`` argument's, else the CXI ``corner_position`` and
  ``basis_vectors`` say it (CXI's default: rows along -y, columns along
  -x; :func:`msftnet.detector.cxi_beam_centre`), else the frame's middle. Without a
  distance and pixel size the pattern must already be on the model's grid
  (``[M, M]``; ``[128, 128]``, the paper's) and is used as it is.
* ``mask``: an extra file (PNG or ``.npy``) whose non-zero pixels are *valid*;
  combined with the file's own mask.
* ``experimental=True``: the paper's experimental images (Barke et al. 2015,
  a colour map rendered to grayscale) - undo the colour map with the paper's
  piecewise-linear map (``undo_colormap``) and take zero pixels as invalid
  (outside the detector, the central hole).

* ``input_scale`` says what the numbers are. ``"log"``: already a
  normalised log pattern in [0, 1] (the paper's PNGs; anything outside [0, 1]
  is an error, never silently rescaled). ``"counts"``: photon counts or
  intensities (>= 0), turned into the model's pattern ``log(I + d)``
  min-max normalised *inside the valid pixels* (a masked hot pixel does not
  set the scale; the refinement fits its own dark level anyway), with
  ``d = COUNTS_DARK`` = 100 photons: shot noise then moves ``log(I + d)``
  by at most ``1 / (2 sqrt(d))`` = 0.05 (at ``I = d``), where ``d`` = 1
  photon let the noise of the many low-count pixels reach 0.5 and steer the
  refinement (benchmarks/RESULTS.md, "Raw counts in a CXI run"). Counts
  must be photons (or intensities in photon units) for this to hold. ``"auto"``
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

import contextlib
import dataclasses
import os

import numpy as np

from msftnet import augment
from msftnet import detector as detector_lib
from msftnet import paper_io
from msftnet.geometry import Geometry

__all__ = ["Frame", "FrameRef", "load_measurement", "load_many",
           "frame_refs", "read_frames", "parse_frames", "stem_of", "read_mask",
           "undo_colormap", "prepare_pattern", "cxi_valid", "DETECTOR_PX",
           "HDF5_SUFFIXES", "INPUT_SCALES", "CXI_DATA_PATHS", "CXI_GEOMETRY",
           "CXI_BAD_PIXEL_BITS", "COUNTS_DARK", "DARK_WARN_FRACTION",
           "photons_of", "why_no_photons"]

INPUT_SCALES = ("auto", "counts", "log")

DETECTOR_PX = 128
HDF5_SUFFIXES = paper_io.HDF5_SUFFIXES
#: Where CXI files keep the frames, in the order tried (soft links followed).
CXI_DATA_PATHS = ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data")
#: (key, CXI field, factor to the key's unit): the detector geometry.
CXI_GEOMETRY = (
    ("distance_mm", "entry_1/instrument_1/detector_1/distance", 1e3),
    ("pixel_um", "entry_1/instrument_1/detector_1/x_pixel_size", 1e6),
    ("pixel_y_um", "entry_1/instrument_1/detector_1/y_pixel_size", 1e6),
    ("corner_m", "entry_1/instrument_1/detector_1/corner_position", 1.0),
    ("basis_m", "entry_1/instrument_1/detector_1/basis_vectors", 1.0),
    ("wavelength_nm", "entry_1/instrument_1/source_1/wavelength", 1e9),
    ("energy_j", "entry_1/instrument_1/source_1/energy", 1.0),
)
_HC_J_NM = 1.98644586e-16            # h c in J nm: lambda = hc / E

#: The bits of a CXI pixel mask that make a pixel invalid here, with their
#: meaning (CXI file format 1.6, Maia 2012, doi:10.1038/nmeth.2110, the
#: Detector class's ``mask``; bits 6 and 9 as Cheetah writes them, which
#: follows CXI). Not listed, so a pixel with only them set stays valid:
#: 5 (in the peak mask: marks pixels for hit/peak finding), 8 (outside the
#: resolution range a hit finder asked for), 11 (artifact corrected), 12
#: (CXI: signal above the background; Cheetah: artifact correction failed,
#: the CXI meaning is taken), 13 (peak for the hit finder), 14 (photon
#: background corrected), 16 (inside a reconstruction's support), and every
#: bit without a standard meaning (CXI leaves them to the user).
CXI_BAD_PIXEL_BITS = {
    0: "invalid",
    1: "saturated",
    2: "hot",
    3: "dead",
    4: "shadowed",
    6: "to be ignored",
    7: "bad (not to be trusted)",
    9: "missing (a gap between detector modules)",
    10: "noisy",
}
_CXI_BAD_MASK = sum(1 << b for b in CXI_BAD_PIXEL_BITS)

def cxi_valid(mask) -> np.ndarray:
  """A CXI pixel mask -> valid pixels (bool, same shape).

  Integer masks are bit fields: a pixel is invalid when any bit of
  :data:`CXI_BAD_PIXEL_BITS` is set. Boolean and floating-point masks are
  not bit fields: any non-zero value marks an invalid pixel.
  """
  mask = np.asarray(mask)
  if np.issubdtype(mask.dtype, np.integer):
    return (mask.astype(np.int64) & _CXI_BAD_MASK) == 0
  return mask == 0


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
  """One usable frame of an input, as :func:`load_many` returns it.

  Attributes:
    stem: the name of its output files: the input's file name without the
      suffix, ``NAME_frameK`` for frame K of an ``[N, H, W]`` dataset.
    path: the input file, as given.
    pattern: ``[M, M]`` float32 in [0, 1] on the geometry's q grid, 0
      outside ``valid``.
    valid: ``[M, M]`` bool, the usable pixels.
    info: how it was read (scale decision and its reason, detector mapping
      with the source of every value, frame index, warnings); JSON-ready,
      the launchers copy it into ``STEM.json``.
  """

  stem: str
  path: str | os.PathLike
  pattern: np.ndarray
  valid: np.ndarray
  info: dict


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


def _read_cxi(path: str):
  """Open a CXI/HDF5 file: ``(h5py file, dataset, CXI pixel mask (a bit
  field, :func:`cxi_valid`) or None, metadata dict, dataset name)``; the
  caller closes the file."""
  import h5py
  import hdf5plugin  # noqa: F401  (registers bitshuffle-LZ4, Blosc, Zstd, ...)
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such file.")
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(f"{path}: not a readable HDF5/CXI file ({e}).") from None
  try:
    found = []
    for n in CXI_DATA_PATHS:
      try:
        found.append((n, f[n]))
      except (KeyError, OSError, ValueError):  # absent, or a dangling link
        continue
    if not found:
      raise ValueError(f"{path}: no dataset {' or '.join(CXI_DATA_PATHS)}, "
                       "expected a CXI file with the pattern there.")
    name, dset = found[0]
    if not isinstance(dset, h5py.Dataset) or dset.ndim not in (2, 3):
      raise ValueError(f"{path}: {name} has shape "
                       f"{getattr(dset, 'shape', None)}, expected [H, W] or "
                       "[N, H, W] detector frames.")
    if not np.issubdtype(dset.dtype, np.number) or dset.dtype.kind == "c":
      raise ValueError(f"{path}: {name} has dtype {dset.dtype}, expected "
                       "real numbers.")
    if dset.ndim == 3 and dset.shape[0] == 0:
      raise ValueError(f"{path}: {name} holds no frames, expected [N, H, W] "
                       "with N >= 1.")
    # The mask lives beside the data: in the group of the dataset as named
    # and in the group of the dataset a soft link points to.
    groups, target = [name.rsplit("/", 1)[0]], name
    for _ in range(8):                           # follow a chain of links
      link = f.get(target, getlink=True)
      if not isinstance(link, h5py.SoftLink):
        break
      target = (link.path.lstrip("/") if link.path.startswith("/") else
                f"{target.rsplit('/', 1)[0]}/{link.path}")
      groups.append(target.rsplit("/", 1)[0])
    mask = None
    for g in groups:
      if f"{g}/mask" in f:
        mask = np.asarray(f[f"{g}/mask"][()])
        break
    if mask is not None and mask.shape not in (dset.shape, dset.shape[-2:]):
      raise ValueError(f"{path}: the CXI mask has shape {mask.shape}, "
                       f"expected {dset.shape[-2:]} or {dset.shape}.")
    meta = {}
    for key, field, scale in CXI_GEOMETRY:
      if field in f:
        meta[key] = np.asarray(f[field][()], np.float64) * scale
    if "wavelength_nm" not in meta and "energy_j" in meta:
      meta["wavelength_nm"] = _HC_J_NM / meta["energy_j"]
    if "pixel_um" in meta and "pixel_y_um" in meta and not np.isclose(
        np.ravel(meta["pixel_um"])[0], np.ravel(meta["pixel_y_um"])[0],
        rtol=1e-3):
      raise ValueError(f"{path}: the detector pixels are "
                       f"{np.ravel(meta['pixel_um'])[0]:.4g} x "
                       f"{np.ravel(meta['pixel_y_um'])[0]:.4g} um, expected "
                       "square pixels.")
    return f, dset, mask, meta, name
  except (KeyError, OSError) as e:      # unreadable content: a bad file
    f.close()
    raise ValueError(f"{path}: unreadable CXI content ({e}), expected "
                     "readable detector data.") from None
  except BaseException:
    f.close()
    raise


def _detector_for(meta: dict, given, shape, geometry, path: str):
  """A FlatDetector from file metadata and given fields, or None.

  ``given``: a complete :class:`FlatDetector`, or a dict with some of its
  fields (they override the file's). The beam centre defaults to the
  middle of the frame and the wavelength to the model geometry's; ``info``
  says where every value came from.
  """
  if isinstance(given, detector_lib.FlatDetector):
    fields = dataclasses.asdict(given)
    return given, {**fields, "source": {k: "given" for k in fields}}
  given = dict(given or {})
  unknown = set(given) - {f.name for f in
                          dataclasses.fields(detector_lib.FlatDetector)}
  if unknown:
    raise ValueError(f"detector: unknown field(s) {sorted(unknown)}, expected "
                     "distance_mm, pixel_um, centre_px, wavelength_nm.")
  fields, source = {}, {}
  for key in ("distance_mm", "pixel_um", "wavelength_nm"):
    if given.get(key) is not None:
      fields[key], source[key] = float(given[key]), "given"
    elif key in meta:
      fields[key], source[key] = float(np.ravel(meta[key])[0]), "file"
  if given.get("centre_px") is not None:
    fields["centre_px"], source["centre_px"] = tuple(given["centre_px"]), "given"
  elif "corner_m" in meta and "pixel_um" in fields:
    fields["centre_px"] = detector_lib.cxi_beam_centre(
        meta["corner_m"], fields["pixel_um"] * 1e-6, meta.get("basis_m"),
        name=path)
    source["centre_px"] = "file"
  if "distance_mm" not in fields and "pixel_um" not in fields:
    return None, None
  missing = [k for k in ("distance_mm", "pixel_um") if k not in fields]
  if missing:
    raise ValueError(f"{path}: the detector {' and '.join(missing)} is "
                     "unknown, expected both distance and pixel size to map "
                     "the detector onto the model's q grid.")
  if "centre_px" not in fields:
    fields["centre_px"] = ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    source["centre_px"] = "assumed (frame centre)"
  if "wavelength_nm" not in fields:
    fields["wavelength_nm"] = float(geometry.wavelength_nm)
    source["wavelength_nm"] = "assumed (model geometry)"
  try:
    det = detector_lib.FlatDetector(**fields)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  rel = abs(det.wavelength_nm / geometry.wavelength_nm - 1)
  if rel > 0.01:
    raise ValueError(f"{path}: the wavelength {det.wavelength_nm:.4g} nm "
                     f"differs from the model geometry's "
                     f"{geometry.wavelength_nm:.4g} nm, expected the "
                     "wavelength the model was made for.")
  return det, {**dataclasses.asdict(det), "source": source}


#: Photons added before the log of counts (module docstring; measured in
#: benchmarks/RESULTS.md, "Raw counts in a CXI run").
COUNTS_DARK = 100.0

#: Above this fraction of the brightest valid pixel the dark level flattens
#: ``log(I + d)`` (its span is at most ``log(1 + 1/f)``): the loaders add a
#: ``warning`` to the input's info, which the launchers print.
DARK_WARN_FRACTION = 0.1


def _check_counts(inside, name) -> None:
  """Counts or intensities (the valid pixels' values) must be >= 0."""
  lo = float(np.min(inside))
  if lo < 0:
    raise ValueError(f"{name}: {np.count_nonzero(inside < 0)} valid pixels "
                     f"are negative (down to {lo:.4g}), expected photon "
                     "counts or intensities >= 0.")


def _resolve_scale(raw, inside_max, input_scale, image, name):
  if input_scale not in INPUT_SCALES:
    raise ValueError(f"{name}: input_scale must be one of "
                     f"{', '.join(INPUT_SCALES)}, got {input_scale!r}.")
  if input_scale != "auto":
    return input_scale, "given"
  if image:
    return "log", "an image file holds a normalised log pattern"
  if np.issubdtype(raw.dtype, np.integer):
    return "counts", f"integer data ({raw.dtype})"
  if inside_max > 1.0:
    return "counts", f"values up to {inside_max:.4g} > 1"
  return "log", "float values within [0, 1]"


def prepare_pattern(data, valid, *, input_scale: str = "auto",
                    image: bool = False, name: str = "pattern",
                    counts_dark: float = COUNTS_DARK):
  """Raw detector numbers -> ``(pattern in [0, 1], info)`` (module docstring).

  Args:
    data: ``[M, M]`` real array (any dtype).
    valid: ``[M, M]`` bool mask of usable pixels.
    input_scale: ``"auto"``, ``"counts"`` or ``"log"``.
    image: the data came from an image file (auto: a log pattern).
    name: how errors name the input.
    counts_dark: ``d`` of ``log(I + d)`` for counts (photons, > 0).
  """
  if not counts_dark > 0:
    raise ValueError(f"{name}: counts_dark must be > 0 (photons), got "
                     f"{counts_dark}.")
  raw = np.asarray(data)
  x = raw.astype(np.float64)
  inside = x[valid]
  lo, hi = float(inside.min()), float(inside.max())
  input_scale, reason = _resolve_scale(raw, hi, input_scale, image, name)
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
    _check_counts(inside, name)
    dark = float(counts_dark)
    logs = np.log(np.maximum(x, 0.0) + dark)
    l_lo, l_hi = float(logs[valid].min()), float(logs[valid].max())
    pattern = np.clip((logs - l_lo) / (l_hi - l_lo), 0.0, 1.0)
  info = {"input_scale": input_scale, "input_scale_reason": reason,
          "input_range": [lo, hi]}
  if input_scale == "counts":
    info["dark_level"] = dark
    info["log_range"] = [l_lo, l_hi]
    if dark > DARK_WARN_FRACTION * hi:
      info["warning"] = (
          f"{name}: the dark level {dark:g} is more than "
          f"{DARK_WARN_FRACTION:.0%} of the brightest valid pixel ({hi:.4g}), "
          "so log(I + d) flattens the pattern; give the counts in photons or "
          "set counts_dark (--counts_dark).")
  return np.asarray(augment.network_input(pattern.astype(np.float32), valid),
                    np.float32), info


def photons_of(info: dict) -> tuple[float, float, float] | None:
  """``(log_lo, log_hi, dark)`` of an input read as counts (its ``info``
  from :func:`prepare_pattern` or a :class:`Frame`): the pattern is
  ``(log(k + dark) - log_lo) / (log_hi - log_lo)``, so the counts ``k``
  can be recovered inside the valid pixels
  (:func:`msftnet.refine.measurement.counts_from_pattern`); None where
  they cannot (:func:`why_no_photons`)."""
  if info.get("input_scale") != "counts" or "log_range" not in info:
    return None
  lo, hi = info["log_range"]
  return float(lo), float(hi), float(info["dark_level"])


def why_no_photons(info: dict) -> str:
  """Why :func:`photons_of` gives None for an input's ``info`` (a clause
  for an error sentence)."""
  if info.get("input_scale") != "counts":
    return (f"this input was read as a log pattern (input_scale "
            f"{info.get('input_scale')!r}; --input_scale=counts reads "
            "counts)")
  if "detector" in info:
    return ("this input was mapped from a flat detector onto the q grid, "
            "which turns its counts into rates per solid angle")
  return ("this input's counts were transformed after reading "
          "(--experimental undoes a colour map)")


def read_mask(path) -> np.ndarray:
  """A valid-pixel mask from PNG or ``.npy`` (non-zero = valid), 2D."""
  path = os.fspath(path)
  if paper_io.input_format(path) == "npy":
    m = paper_io.read_array(path, "mask")
  else:
    img = paper_io.read_image(path)
    m = img[..., 1] if img.ndim == 3 else img
  m = np.asarray(m)
  if m.ndim != 2:
    raise ValueError(f"{path}: mask has shape {m.shape}, expected a 2D "
                     "mask the shape of the patterns.")
  return m != 0


def _frame(path, raw, bad, extra_mask, *, experimental, input_scale,
           image, det, det_info, geometry, name, counts_dark):
  """One raw frame (any shape) -> ``(pattern, valid, info)``."""
  raw = np.asarray(raw)
  if not np.issubdtype(raw.dtype, np.number) or np.iscomplexobj(raw):
    raise ValueError(f"{name}: the pattern has dtype {raw.dtype}, expected "
                     "real numbers.")
  if not np.all(np.isfinite(raw)):
    raise ValueError(f"{name}: the pattern contains NaN or infinite values, "
                     "expected finite numbers.")
  m = geometry.detector_px
  if det is None and raw.shape != (m, m):
    raise ValueError(f"{name}: pattern has shape {raw.shape}, expected "
                     f"({m}, {m}) detector pixels on the model's q grid, or "
                     "the detector distance and pixel size to map it there.")
  valid = np.ones(raw.shape, bool) if bad is None else cxi_valid(bad)
  if experimental:
    valid &= raw > 0
  if extra_mask is not None:
    if extra_mask.shape != raw.shape:
      raise ValueError(f"mask has shape {extra_mask.shape}, expected "
                       f"{raw.shape}.")
    valid &= extra_mask
  if not valid.any():
    raise ValueError(f"{name}: the valid-pixel mask leaves no pixel, expected "
                     "at least one valid detector pixel.")
  info = {}
  if det is not None:
    hi = float(raw[valid].max())
    scale, reason = _resolve_scale(raw, hi, input_scale, image, name)
    if scale == "log":
      raise ValueError(f"{name}: a normalised log pattern cannot be mapped "
                       "from a flat detector, expected photon counts or "
                       "intensities (input_scale counts).")
    _check_counts(raw[valid], name)
    raw, valid = detector_lib.to_q_grid(raw, valid, det, geometry, name=name)
    pattern, info = prepare_pattern(raw, valid, input_scale="counts",
                                    name=name, counts_dark=counts_dark)
    info.update(input_scale_reason=reason, detector=det_info,
                detector_coverage=float(valid.mean()))
    # Mapped onto the q grid, the numbers are rates per solid angle
    # (averaged or interpolated), no longer Poisson counts per pixel.
    info.pop("log_range", None)
  else:
    pattern, info = prepare_pattern(raw, valid, input_scale=input_scale,
                                    image=image, name=name,
                                    counts_dark=counts_dark)
  if experimental:
    pattern = np.where(valid, undo_colormap(pattern), 0.0).astype(np.float32)
    info.pop("log_range", None)   # the counts no longer follow from it
  return pattern, valid, info


def _extra_mask(mask):
  if mask is None:
    return None
  if isinstance(mask, (str, os.PathLike)):
    return read_mask(mask)
  return np.asarray(mask, bool)


def _missing_virtual_sources(path: str, dset) -> list:
  """``[(first, last frame, file)]`` of a virtual dataset's sources that
  cannot be found (looked up as HDF5 does: ``HDF5_VDS_PREFIX``, then beside
  the CXI file, then relative to the working directory)."""
  if not getattr(dset, "is_virtual", False):
    return []
  out = []
  here = os.path.dirname(os.path.abspath(path))
  prefixes = [p for p in os.environ.get("HDF5_VDS_PREFIX", "").split(":") if p]
  for m in dset.virtual_sources():
    if m.file_name == ".":
      continue
    places = [os.path.join(p, m.file_name) for p in prefixes]
    places += [os.path.join(here, m.file_name), m.file_name]
    if not any(os.path.exists(p) for p in places):
      lo, hi = m.vspace.get_select_bounds()
      out.append((int(lo[0]), int(hi[0]), m.file_name))
  return out


def _frames(path, *, mask=None, experimental: bool = False,
            input_scale: str = "auto", detector=None,
            geometry: Geometry | None = None,
            counts_dark: float = COUNTS_DARK):
  """The frames of one input: yields ``(frame, n_frames, read)``.

  ``frame`` is the index in an ``[N, H, W]`` dataset (None for a single 2D
  pattern, with ``n_frames`` 1); ``read()`` returns ``(pattern, valid, info)`` or raises
  ``ValueError`` naming the frame. Problems with the whole file raise before
  the first frame. HDF5 frames are read one by one (a run of thousands of
  frames streams); the file stays open until the generator finishes.
  """
  path = os.fspath(path)
  geometry = Geometry() if geometry is None else geometry
  extra = _extra_mask(mask)
  kw = dict(experimental=experimental, input_scale=input_scale,
            geometry=geometry, counts_dark=counts_dark)
  fmt = paper_io.input_format(path)
  if fmt != "hdf5":
    raw = (paper_io.read_array(path) if fmt == "npy" and detector
           else paper_io.read_pattern(path))
    if raw.ndim != 2:
      raise ValueError(f"{path}: expected a 2D pattern, got shape "
                       f"{raw.shape}.")
    det, det_info = _detector_for({}, detector, np.shape(raw), geometry, path)
    yield None, 1, lambda: _frame(
        path, raw, None, extra, image=fmt != "npy", det=det,
        det_info=det_info, name=path, **kw)
    return
  f, dset, bad, meta, dname = _read_cxi(path)
  with f:
    det, det_info = _detector_for(meta, detector, dset.shape[-2:], geometry,
                                  path)

    missing = _missing_virtual_sources(path, dset)

    def read(k, name):
      for lo, hi, source in missing:
        if k is None or lo <= k <= hi:
          raise ValueError(
              f"{name}: {dname} is a virtual dataset whose source file "
              f"{source} (frames {lo} to {hi}) is missing, expected it "
              "beside the CXI file (HDF5 would return fill values for it).")
      try:
        raw = dset[()] if k is None else dset[k]
      except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{name}: cannot read {dname} ({e}), expected "
                         "readable detector data.") from None
      if k is None:
        frame_bad, extra_info = bad, {}
      else:
        frame_bad = bad[k] if bad is not None and bad.ndim == 3 else bad
        extra_info = {"frame": k, "n_frames": dset.shape[0]}
      pattern, valid, info = _frame(path, raw, frame_bad, extra, image=False,
                                    det=det, det_info=det_info, name=name,
                                    **kw)
      return pattern, valid, {**info, "dataset": dname, **extra_info}

    if dset.ndim == 2:
      yield None, 1, lambda: read(None, path)
      return
    for k in range(dset.shape[0]):
      yield k, dset.shape[0], lambda k=k: read(k, f"{path} frame {k}")


def load_measurement(path, *, mask=None, experimental: bool = False,
                     input_scale: str = "auto", detector=None,
                     frame: int | None = None,
                     geometry: Geometry | None = None,
                     return_info: bool = False,
                     counts_dark: float = COUNTS_DARK):
  """Read one pattern and its valid mask (see the module docstring).

  Args:
    path: PNG, ``.npy``, or HDF5/CXI file.
    mask: optional mask file path or boolean array (True = valid), the shape
      of the file's frames.
    experimental: undo the paper's colour map and treat zero pixels as invalid.
    input_scale: ``"auto"``, ``"counts"`` or ``"log"`` (module docstring).
    detector: a :class:`msftnet.detector.FlatDetector`, or a dict of some of
      its fields (they override the CXI file's): map a flat detector onto the
      model's q grid. None: the file's geometry if it has one, else the
      pattern must already be on the model's grid.
    frame: which frame of an ``[N, H, W]`` dataset (needed when N > 1).
    geometry: the model's geometry (default: the paper's): the pattern's
      shape, and the q grid a flat detector is mapped onto.
    return_info: also return a dict with the scale decision (and detector
      mapping, frame).
    counts_dark: photons added before the log of counts (module docstring).

  Returns:
    ``(pattern [M, M] float32 in [0, 1], valid [M, M] bool)`` (and
    ``info``); pixels outside ``valid`` are set to 0.
  """
  path = os.fspath(path)
  with contextlib.closing(_frames(
      path, mask=mask, experimental=experimental, input_scale=input_scale,
      detector=detector, geometry=geometry,
      counts_dark=counts_dark)) as frames:
    n = 1
    for k, n, read in frames:            # the file is open while we read
      if frame is None and n > 1:
        raise ValueError(f"{path}: holds {n} frames, expected one (pass "
                         "frame=K; the launchers reconstruct every frame).")
      if frame is None or k == frame:
        pattern, valid, info = read()
        return (pattern, valid, info) if return_info else (pattern, valid)
  raise ValueError(f"{path}: there is no frame {frame}, expected 0 to "
                   f"{max(n - 1, 0)}.")


def stem_of(path) -> str:
  """``DIR/NAME.ext`` -> ``NAME`` (the output file stem of an input)."""
  return os.path.splitext(os.path.basename(os.fspath(path)))[0]


@dataclasses.dataclass(frozen=True)
class FrameRef:
  """One frame of one input, not yet read (:func:`frame_refs`).

  Attributes:
    stem: output file stem (``NAME``, or ``NAME_frameK`` for frame K of a
      run; K is the frame's number in the file whatever ``frames`` picked).
    path: the input file.
    index: the frame's index in an ``[N, H, W]`` dataset, None for a
      single pattern.
  """

  stem: str
  path: str
  index: int | None = None


def parse_frames(spec: str | None):
  """``--frames`` syntax -> a function ``n -> sorted frame indices``.

  ``spec``: comma-separated items, each an index ``K`` or a Python-style
  range ``A:B`` (``B`` excluded; either end may be left out; negative
  numbers count from the end), e.g. ``0:100,250``; None or empty: every
  frame. The function raises ``ValueError`` for an index a run of ``n``
  frames does not have, and for a range that holds none of its frames.
  """
  if spec is None or not str(spec).strip():
    return lambda n: list(range(n))
  items = []
  for item in str(spec).split(","):
    item = item.strip()
    try:
      if ":" in item:
        a, b = item.split(":")
        items.append((int(a) if a.strip() else None,
                      int(b) if b.strip() else None))
      else:
        items.append(int(item))
    except ValueError:
      raise ValueError(f"--frames={spec}: {item!r} is not a frame number or "
                       "a range A:B, expected e.g. 0:100,250.") from None

  def pick(n: int) -> list[int]:
    out = set()
    for it in items:
      if isinstance(it, tuple):
        picked = range(n)[slice(*it)]
        if not picked:
          a, b = ("" if x is None else x for x in it)
          raise ValueError(f"frames {a}:{b} hold none of the run's {n} "
                           f"frames (0 to {n - 1}).")
        out.update(picked)
      else:
        k = it + n if it < 0 else it
        if not 0 <= k < n:
          raise ValueError(f"frame {it} is not in the run, which holds {n} "
                           f"frames (0 to {n - 1}).")
        out.add(k)
    return sorted(out)

  return pick


def _n_frames(path: str) -> int | None:
  """Frames of a run (``[N, H, W]``), None for a single pattern; reads only
  the file's metadata."""
  if paper_io.input_format(path) != "hdf5":
    if not os.path.exists(path):
      raise ValueError(f"{path}: no such file.")
    return None
  f, dset, _, _, _ = _read_cxi(path)
  with f:
    return int(dset.shape[0]) if dset.ndim == 3 else None


def frame_refs(paths, *, frames: str | None = None):
  """The frames several inputs hold, without reading them.

  ``frames``: which frames of each run (:func:`parse_frames`; a single
  pattern is always taken). Returns ``(refs, bad)``: a list of
  :class:`FrameRef` and ``[(path, sentence)]`` for inputs that cannot be
  used as a whole (unreadable file, a frame the run does not have, a stem
  another input already has).
  """
  pick = parse_frames(frames)
  refs, bad, stems = [], [], set()
  for path in paths:
    path = os.fspath(path)
    stem = stem_of(path)
    if stem in stems:
      bad.append((path, f"{path}: another input already has the name "
                  f"{stem!r}; its outputs would overwrite the first's."))
      continue
    stems.add(stem)
    try:
      n = _n_frames(path)
      if n is None:
        refs.append(FrameRef(stem, path))
      else:
        refs += [FrameRef(f"{stem}_frame{k}", path, k) for k in pick(n)]
    except ValueError as e:
      msg = str(e)
      bad.append((path, msg if msg.startswith(path) else f"{path}: {msg}"))
  return refs, bad


def read_frames(refs, *, mask=None, experimental: bool = False,
                input_scale: str = "auto", detector=None,
                geometry: Geometry | None = None,
                counts_dark: float = COUNTS_DARK):
  """Read :class:`FrameRef` s one by one: yields a :class:`Frame`, or
  ``(path, sentence)`` for a frame (or file) that cannot be used.

  Lazy: a frame is read when its turn comes, each file opened once per run
  of consecutive refs (a virtual dataset once per source file it reads:
  :func:`_source_blocks`), so memory stays flat over a run of any length.
  The other arguments are those of :func:`load_measurement`.
  """
  kw = dict(mask=mask, experimental=experimental, input_scale=input_scale,
            detector=detector, geometry=geometry, counts_dark=counts_dark)
  refs = list(refs)
  i = 0
  while i < len(refs):
    path = refs[i].path
    j = i
    while j < len(refs) and refs[j].path == path:
      j += 1
    for block in _source_blocks(path, refs[i:j]):
      yield from _read_group(path, {r.index: r for r in block}, kw)
    i = j


def _source_blocks(path: str, refs: list) -> list[list]:
  """``refs`` (of one file) cut where a virtual dataset's frames move to
  another source file: each block is read with the file opened afresh, so
  HDF5 holds one source file open at a time (it keeps every source it has
  read open, with its caches, until the file closes: about 9 MB each,
  measured with bitshuffle-LZ4 sources)."""
  if paper_io.input_format(path) != "hdf5" or len(refs) < 2:
    return [refs]
  try:
    import h5py
    with h5py.File(path, "r") as f:
      starts = set()
      for name in CXI_DATA_PATHS:
        dset = f.get(name)
        if isinstance(dset, h5py.Dataset) and dset.is_virtual and dset.ndim == 3:
          starts = {int(m.vspace.get_select_bounds()[0][0])
                    for m in dset.virtual_sources()}
          break
  except (OSError, ValueError, KeyError):
    return [refs]            # _frames names what is wrong with the file
  if not starts:
    return [refs]
  bounds = np.asarray(sorted(starts))
  blocks: list[list] = []
  last = None
  for r in refs:
    b = int(np.searchsorted(bounds, r.index, side="right"))
    if b != last:
      blocks.append([])
      last = b
    blocks[-1].append(r)
  return blocks


def _read_group(path: str, group: dict, kw: dict):
  """Frames ``group`` (index -> ref) of one file, opened once."""
  done = set()
  try:
    with contextlib.closing(_frames(path, **kw)) as it:
      for k, _, read in it:
        if k not in group:
          continue
        try:
          pattern, valid, info = read()
        except ValueError as e:
          yield (path, str(e))
        else:
          yield Frame(group[k].stem, path, pattern, valid, info)
        done.add(k)
        if len(done) == len(group):
          break
  except ValueError as e:                      # the whole file
    for k in group:
      if k not in done:
        yield (path, str(e))


def load_many(paths, *, mask=None, experimental: bool = False,
              input_scale: str = "auto", detector=None,
              geometry: Geometry | None = None,
              counts_dark: float = COUNTS_DARK, frames: str | None = None):
  """Read several inputs, every frame of each (or the ``frames`` picked,
  :func:`parse_frames`); a bad one does not stop the others.

  The arguments are those of :func:`load_measurement`; ``geometry`` is the
  model's (default: the paper's): flat-detector frames are mapped onto its
  q grid, other patterns must have its ``[M, M]`` shape. Everything is read
  into memory: a long run is better streamed with :func:`frame_refs` and
  :func:`read_frames`.

  Returns:
    ``good``: a list of :class:`Frame` (stem ``NAME_frameK`` for frame K of
    an ``[N, H, W]`` dataset); ``bad``: ``[(path, error sentence)]``. Two
    inputs with the same stem are an error for the second (their outputs
    would overwrite each other).
  """
  refs, bad = frame_refs(paths, frames=frames)
  good = []
  for item in read_frames(refs, mask=mask, experimental=experimental,
                          input_scale=input_scale, detector=detector,
                          geometry=geometry, counts_dark=counts_dark):
    if isinstance(item, Frame):
      good.append(item)
    else:
      bad.append(item)
  return good, bad
