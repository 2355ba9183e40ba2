r"""The forward models against the exact Mie solution for spheres.

  python -m benchmarks.mie_validation [--sizes=64] [--json_out=FILE]

For each sphere (silver at 13.5 nm, radius 30, 80 and 150 nm; molybdenum,
weakly absorbing and strongly refracting at the same energy, radius 80 and
150 nm; indices from Henke's tables, ``msftnet.Material.from_henke``) and
each forward model, the Pearson correlation of the log intensities with
``miepython``'s unpolarised Mie intensity over the detector pixels within
60 degrees of the beam (``r_60``, the bar), and in bands of scattering angle
(``r_0_20`` ... ``r_60_80``) to show where a model breaks down. Models:

* ``msft_paper``: :func:`msftnet.msft` with the paper's setting (amplitude
  absorption length 12.5 nm, no refraction), whatever the material;
* ``msft``: :func:`msftnet.msft` with the material's beta (no refraction);
* ``projection``: :func:`msftnet.pmsft` with ``propagate=False`` (the
  refraction phase along straight rays, no diffraction inside);
* ``pmsft``: :func:`msftnet.pmsft` (propagation, default padding 2);
* ``pmsft_pad4``: the same on a propagation grid four times the box (less
  wrap-around of light scattered at wide angles).

The sphere is rasterised with 4^3 sub-voxels per voxel
(``msftnet.raster.rasterize``) on the paper's grid (box 318.75 nm, 128^2
pixels of 2 pi / 850 nm^-1); ``--sizes`` changes the voxels per axis (the
box stays). Runtime: about a minute on 2 CPU cores for 64^3.
"""

from __future__ import annotations

import math

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import Geometry
from msftnet import Material
from msftnet import msft
from msftnet import pmsft
from msftnet.material import HC_EV_NM
from msftnet.raster import rasterize

_SIZES = flags.DEFINE_list("sizes", ["64"], "Voxels per axis N.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")

CASES = (("Ag", 30.0), ("Ag", 80.0), ("Ag", 150.0), ("Mo", 80.0),
         ("Mo", 150.0))
BANDS = ((0, 20), (20, 40), (40, 60), (60, 80))


def sphere(n: int, radius_nm: float, box_nm: float) -> np.ndarray:
  """A ball of ``radius_nm`` centred in the box, anti-aliased (4^3)."""
  r = radius_nm / box_nm
  return np.asarray(rasterize(np.zeros((1, 3)), np.full(1, 10.0),
                              np.eye(3) / r**2, n, supersample=4))


def mie_intensity(geometry: Geometry, material: Material, radius_nm: float):
  """Unpolarised Mie intensity at every pixel's scattering angle (nan
  outside the Ewald sphere), and that angle in degrees."""
  import miepython
  angle = np.degrees(geometry.scattering_angle_rad)
  mu = np.cos(np.radians(np.nan_to_num(angle)))
  x = 2 * math.pi * radius_nm / geometry.wavelength_nm
  # miepython writes an absorbing index as n - i kappa.
  inten = miepython.i_unpolarized(material.index.conjugate(), x, mu.ravel())
  return np.where(geometry.ewald_mask, inten.reshape(mu.shape), np.nan), angle


def log_correlation(a, b, sel) -> float:
  sel = sel & (a > 0) & (b > 0)
  return float(np.corrcoef(np.log(a[sel]), np.log(b[sel]))[0, 1])


def main(argv):
  del argv
  report = Report()
  energy = HC_EV_NM / Geometry().wavelength_nm
  for n in map(int, _SIZES.value):
    paper = Geometry(n_voxels=n)
    for element, radius in CASES:
      material = Material.from_henke(element, energy)
      g = paper.replace(material=material)
      rho = sphere(n, radius, g.box_nm)
      mie, angle = mie_intensity(g, material, radius)
      models = {
          "msft_paper": jax.jit(lambda d: msft(d, paper)),
          "msft": jax.jit(lambda d, g=g: msft(d, g)),
          "projection": jax.jit(lambda d, g=g: pmsft(d, g, propagate=False)),
          "pmsft": jax.jit(lambda d, g=g: pmsft(d, g)),
          "pmsft_pad4": jax.jit(lambda d, g=g: pmsft(d, g, padding=4)),
      }
      for name, fn in models.items():
        inten = np.abs(np.asarray(fn(rho), np.complex128)) ** 2
        rec = {"material": material.name, "delta": round(material.delta, 5),
               "beta": round(material.beta, 5), "radius_nm": radius,
               "n_voxels": n, "model": name,
               "r_60": round(log_correlation(inten, mie, angle <= 60), 5)}
        for lo, hi in BANDS:
          rec[f"r_{lo}_{hi}"] = round(log_correlation(
              inten, mie, (angle > lo) & (angle <= hi)), 4)
        report.add(rec)
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
