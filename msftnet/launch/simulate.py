r"""Simulate the wide-angle scattering pattern of a density volume.

Usage:
  python -m experiments.simulate                       # built-in object
  python -m experiments.simulate --density=VOL.npy --out=pattern.png
  python -m experiments.simulate --density=../shared/data/paper-sample/real/14/139901r.png
  python -m experiments.simulate --forward_model=pmsft --material=henke:Ag

Reads a ``.npy`` volume ``[N, N, N]`` (z, y, x), beam +z, or one of the paper's
flattened PNG volumes; simulates ``|E|^2`` with the MSFT on the paper's
geometry (box 318.75 nm, 13.5 nm, 128 x 128 detector; N from the volume;
``--forward_model=pmsft`` and ``--material`` for refraction) and
writes the normalised log pattern as a PNG in the paper's format (RGB, value
in every channel), plus ``--intensity_out`` as ``.npy`` if asked. Runtime: a
few seconds on a laptop CPU (most of it start-up and compilation).
"""

from __future__ import annotations

import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from msftnet import Geometry
from msftnet import intensity
from msftnet import log_pattern
from msftnet import paper_io
from msftnet.geometry import FORWARD_MODELS
from msftnet.solids import example_density

_DENSITY = flags.DEFINE_string("density", None,
                            "Volume to simulate: .npy [N, N, N] or the paper's "
                            "PNG format; default: a built-in truncated solid.")
_OUT = flags.DEFINE_string("out", "simulated_pattern.png",
                           "Output pattern PNG (normalised log intensity).")
_INTENSITY_OUT = flags.DEFINE_string("intensity_out", None,
                                     "Optional .npy for the raw |E|^2 [M, M].")
_BOX = flags.DEFINE_float("box_nm", 318.75, "Edge length of the volume's box.")
_WAVELENGTH = flags.DEFINE_float("wavelength_nm", 13.5, "Photon wavelength.")
_ABSORPTION = flags.DEFINE_float(
    "absorption_length_nm", 12.5,
    "1/e absorption length of the field amplitude (inf: none).")
_DETECTOR = flags.DEFINE_integer("detector_px", 128, "Detector pixels per axis.")
_FORWARD_MODEL = flags.DEFINE_enum(
    "forward_model", "msft", list(FORWARD_MODELS),
    "msft (the paper's, absorption only) or pmsft (propagation, refraction).")
_MATERIAL = flags.DEFINE_string(
    "material", "", "Refractive index: '' (the paper's absorption via "
    "--absorption_length_nm), DELTA,BETA, henke:FORMULA[:DENSITY] or "
    "xraydb:FORMULA[:DENSITY].")
_EPS = flags.DEFINE_float("eps", 100.0,
                          "Constant added to |E|^2 before the log (the paper's "
                          "loss uses 100 at 64^3).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  start = time.perf_counter()
  try:
    if _DENSITY.value is None:
      density, source = example_density(64), "built-in truncated octahedron"
    else:
      density, source = paper_io.read_density(_DENSITY.value), _DENSITY.value
      if density.min() < 0 or density.max() > 1:
        raise ValueError(f"{_DENSITY.value}: density values must lie in [0, 1], "
                         f"got [{density.min():.3g}, {density.max():.3g}].")
    geometry = Geometry(n_voxels=density.shape[0], box_nm=_BOX.value,
                        wavelength_nm=_WAVELENGTH.value,
                        absorption_length_nm=_ABSORPTION.value,
                        detector_px=_DETECTOR.value).with_physics(
                            _FORWARD_MODEL.value, _MATERIAL.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  inten = np.asarray(jax.jit(intensity, static_argnums=1)(density, geometry))
  pattern = np.asarray(log_pattern(inten, eps=_EPS.value))
  paper_io.write_pattern(_OUT.value, pattern)
  if _INTENSITY_OUT.value:
    paper_io.save_npy(_INTENSITY_OUT.value, inten.astype(np.float32))
  print(f"simulated {source}: {density.shape[0]}^3 voxels of "
        f"{geometry.voxel_nm:.3f} nm, fill {density.mean():.3f} -> "
        f"{geometry.detector_px}^2 pattern, max |E|^2 = {inten.max():.4g}; "
        f"wrote {_OUT.value} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
  app.run(main)
