"""The input flags that every launcher reading measured patterns shares.

``--mask``, ``--experimental``, ``--input_scale`` and the flat-detector
geometry (``--detector_distance_mm``, ``--pixel_um``, ``--beam_centre``,
``--wavelength_nm``; they override what a CXI file states), and
``load(paths, geometry)`` which reads every frame of every input with them
onto the geometry's q grid (``msftnet.measured``); the forward model that
explains them (``--forward_model``, ``--material``) and
``geometry(base)``, the base geometry with them; the mesh output
(``--mesh``, ``--mesh_format``; ``mesh_format()``). A launcher resolves the
geometry once with ``geometry(...)`` and passes it to ``load`` and to the
library.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from msftnet import measured
from msftnet import report
from msftnet.geometry import FORWARD_MODELS
from msftnet.geometry import Geometry

MASK = flags.DEFINE_string("mask", None, "Valid-pixel mask (PNG/npy, "
                           "non-zero = valid) for every input.")
EXPERIMENTAL = flags.DEFINE_bool(
    "experimental", False, "Undo the paper's experimental colour map; zero "
    "pixels invalid.")
INPUT_SCALE = flags.DEFINE_enum(
    "input_scale", "auto", list(measured.INPUT_SCALES),
    "What the input numbers are: photon counts/intensities (log-scaled "
    "here) or a normalised log pattern; auto decides from the data and "
    "records why in STEM.json.")
DISTANCE = flags.DEFINE_float(
    "detector_distance_mm", None, "Flat detector: particle-detector "
    "distance in mm (default: the CXI file's).")
PIXEL = flags.DEFINE_float("pixel_um", None, "Flat detector: pixel size in "
                           "micrometres (default: the CXI file's).")
CENTRE = flags.DEFINE_list(
    "beam_centre", None, "Flat detector: ROW,COL pixel of the direct beam "
    "(default: the CXI file's corner position, else the frame centre).")
WAVELENGTH = flags.DEFINE_float(
    "wavelength_nm", None, "Flat detector: photon wavelength in nm (default: "
    "the CXI file's, else the model's).")
COUNTS_DARK = flags.DEFINE_float(
    "counts_dark", measured.COUNTS_DARK,
    "Photons added before the log of counts (input_scale counts); give the "
    "counts in photons.")

FORWARD_MODEL = flags.DEFINE_enum(
    "forward_model", None, list(FORWARD_MODELS),
    "Forward model of the refinement / fit: msft (the paper's, absorption "
    "only) or pmsft (propagation MSFT with refraction). Default: the "
    "model's (reconstruct), msft (fit).")
MATERIAL = flags.DEFINE_string(
    "material", None, "Refractive index: 'paper' (the paper's absorption-"
    "only setting), DELTA,BETA, henke:FORMULA[:DENSITY] or "
    "xraydb:FORMULA[:DENSITY] (tables at the model's wavelength). Default: "
    "the model's (reconstruct), the paper's (fit).")

FRAMES = flags.DEFINE_string(
    "frames", None, "Which frames of each run (HDF5/CXI [N, H, W]): "
    "indices and ranges A:B (B excluded), e.g. 0:100,250; default all. "
    "Output stems keep the file's frame numbers.")

MESH = flags.DEFINE_bool(
    "mesh", False, "Also write the 0.5 isosurface, DIR/STEM.obj (or "
    "--mesh_format), and its watertightness, volume and area in STEM.json.")
MESH_FORMAT = flags.DEFINE_enum("mesh_format", "obj", list(report.MESH_FORMATS),
                                "File format of --mesh.")


def mesh_format() -> str | None:
  """The mesh format to write, None without ``--mesh``."""
  return MESH_FORMAT.value if MESH.value else None


def geometry(base: Geometry) -> Geometry:
  """``base`` (the model's geometry, or the paper's for a fit) with
  ``--forward_model`` and ``--material`` where given
  (:meth:`Geometry.with_physics`: a material replaces the absorption-length
  setting); ValueError with one sentence for a bad material."""
  return base.with_physics(forward_model=FORWARD_MODEL.value,
                           material=MATERIAL.value)


def detector_overrides() -> dict:
  """The detector fields given on the command line."""
  out = {"distance_mm": DISTANCE.value, "pixel_um": PIXEL.value,
         "wavelength_nm": WAVELENGTH.value}
  if CENTRE.value is not None:
    try:
      row, col = (float(c) for c in CENTRE.value)
    except ValueError:
      raise flags.ValidationError(
          f"--beam_centre must be ROW,COL, got {','.join(CENTRE.value)}."
      ) from None
    out["centre_px"] = (row, col)
  return {k: v for k, v in out.items() if v is not None}


def _read_kwargs(geometry: Geometry) -> dict:
  if not COUNTS_DARK.value > 0:
    raise app.UsageError(f"--counts_dark must be > 0 photons, got "
                         f"{COUNTS_DARK.value}.")
  return dict(mask=MASK.value, experimental=EXPERIMENTAL.value,
              input_scale=INPUT_SCALE.value, counts_dark=COUNTS_DARK.value,
              detector=detector_overrides(), geometry=geometry)


def _warn(frame) -> None:
  if "warning" in frame.info:
    print(f"warning: {frame.info['warning']}", file=sys.stderr)


def load(paths, geometry: Geometry):
  """``measured.load_many`` with the flags onto ``geometry``'s q grid (the
  model's, as :func:`geometry` resolved it): ``(good, bad)``, ``good`` a
  list of :class:`msftnet.measured.Frame`."""
  kwargs = _read_kwargs(geometry)
  try:
    good, bad = measured.load_many(paths, frames=FRAMES.value, **kwargs)
  except ValueError as e:                       # a malformed --frames
    raise app.UsageError(str(e)) from None
  for frame in good:
    _warn(frame)
  return good, bad


def refs(paths):
  """The frames the inputs hold (``--frames`` applied), unread:
  ``(refs, bad)`` (:func:`msftnet.measured.frame_refs`)."""
  try:
    return measured.frame_refs(paths, frames=FRAMES.value)
  except ValueError as e:                       # a malformed --frames
    raise app.UsageError(str(e)) from None


def stream(frame_refs, geometry: Geometry):
  """Read ``frame_refs`` one by one with the flags
  (:func:`msftnet.measured.read_frames`), printing each frame's warning."""
  for item in measured.read_frames(frame_refs, **_read_kwargs(geometry)):
    if not isinstance(item, tuple):
      _warn(item)
    yield item
