"""The complex refractive index of the particle: ``n = 1 - delta + i beta``.

A :class:`Material` is frozen and hashable (it rides inside a
:class:`msftnet.Geometry`, a static argument under ``jax.jit``). Sign
convention: the field in the material goes as ``exp(i n k z)``, so relative
to vacuum it is attenuated as ``exp(-k beta z)`` and phase-shifted by
``exp(-i k delta z)`` (``k = 2 pi / lambda``). Conversions:

* amplitude (field) 1/e attenuation length ``lambda / (2 pi beta)``;
* intensity 1/e attenuation length (Henke's and xraydb's "attenuation
  length") ``lambda / (4 pi beta)``, half the amplitude length;
* photon energy ``E [eV] = 1239.84198 / lambda [nm]``.

The paper's setting (Stielow & Scheel 2021) is absorption only with an
*amplitude* length of 12.5 nm at 13.5 nm: ``Material(delta=0, beta=lambda /
(2 pi 12.5 nm))`` (:meth:`Material.from_attenuation_length`), which is what a
``Geometry`` without a material means. Tabulated indices:

* :meth:`Material.from_henke`: Henke, Gullikson & Davis (1993) scattering
  factors (the CXRO tables), through ``periodictable``'s ``xsf`` module, 10 eV
  to 30 keV. The tables the EUV community uses; physics.md's silver values.
* :meth:`Material.from_xraydb`: ``xraydb``'s ``xray_delta_beta`` (Chantler's
  tables). Below about 1 keV Chantler and Henke differ a lot for heavy
  elements: silver at 91.8 eV is delta 0.075, beta 0.032 in xraydb against
  0.110, 0.079 in Henke's tables.

Both libraries are optional (``pip install msftnet[physics]``).
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["Material", "parse_material", "HC_EV_NM"]

#: h c in eV nm: ``E [eV] = HC_EV_NM / lambda [nm]``.
HC_EV_NM = 1239.84198


def _finite(name, value) -> float:
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"Material.{name} must be a number, got {value!r}.") from None
  if not math.isfinite(v):
    raise ValueError(f"Material.{name} must be finite, got {value!r}.")
  return v


@dataclasses.dataclass(frozen=True)
class Material:
  """A homogeneous material's refractive index ``1 - delta + i beta``.

  Attributes:
    delta: refractive index decrement (phase); may be negative near edges.
    beta: absorption index, >= 0.
    name: a label for outputs (e.g. ``"Ag (Henke, 91.8 eV)"``); not physics,
      but part of equality and the hash.
  """

  delta: float
  beta: float
  name: str = ""

  def __post_init__(self):
    object.__setattr__(self, "delta", _finite("delta", self.delta))
    object.__setattr__(self, "beta", _finite("beta", self.beta))
    if self.beta < 0:
      raise ValueError(
          f"Material.beta must be >= 0 (an absorbing or transparent "
          f"material), got {self.beta!r}.")

  @property
  def index(self) -> complex:
    """``n = 1 - delta + i beta``."""
    return complex(1.0 - self.delta, self.beta)

  def amplitude_attenuation_length_nm(self, wavelength_nm: float) -> float:
    """1/e length of the field amplitude, ``lambda / (2 pi beta)`` (inf at 0)."""
    return (math.inf if self.beta == 0
            else float(wavelength_nm) / (2 * math.pi * self.beta))

  def intensity_attenuation_length_nm(self, wavelength_nm: float) -> float:
    """1/e length of the intensity, ``lambda / (4 pi beta)`` (the tables')."""
    return 0.5 * self.amplitude_attenuation_length_nm(wavelength_nm)

  @classmethod
  def from_attenuation_length(cls, length_nm: float, wavelength_nm: float, *,
                              convention: str = "amplitude",
                              delta: float = 0.0, name: str = ""
                              ) -> "Material":
    """The material whose ``convention`` 1/e length is ``length_nm``.

    ``convention``: ``"amplitude"`` (the paper's code: the field decays as
    ``exp(-z / a)``) or ``"intensity"`` (the tables' attenuation length).
    ``length_nm = inf`` gives ``beta = 0``.
    """
    if convention not in ("amplitude", "intensity"):
      raise ValueError("Material.from_attenuation_length: convention must be "
                       f"'amplitude' or 'intensity', got {convention!r}.")
    a = float(length_nm)
    if not a > 0:
      raise ValueError("Material.from_attenuation_length: length_nm must be "
                       f"positive, got {length_nm!r}.")
    if math.isinf(a):
      return cls(delta=delta, beta=0.0, name=name)
    amplitude = a if convention == "amplitude" else 2 * a
    return cls(delta=delta, beta=float(wavelength_nm) / (2 * math.pi * amplitude),
               name=name)

  @classmethod
  def from_henke(cls, formula: str, energy_ev: float,
                 density_g_cm3: float | None = None) -> "Material":
    """Henke's tables (CXRO) via ``periodictable``; density defaults to the
    element's (an error for compounds without one)."""
    try:
      from periodictable import xsf
    except ImportError:
      raise ImportError("Material.from_henke needs the 'periodictable' package "
                        "(pip install msftnet[physics]).") from None
    energy_kev = _energy(energy_ev, "from_henke") / 1000.0
    try:
      n = complex(xsf.index_of_refraction(formula, density=density_g_cm3,
                                          energy=energy_kev))
    except Exception as e:      # periodictable raises many kinds for bad input
      raise ValueError(f"Material.from_henke: cannot evaluate {formula!r} at "
                       f"{energy_ev} eV (density {density_g_cm3}): {e}") from None
    if not (math.isfinite(n.real) and math.isfinite(n.imag)):
      raise ValueError(f"Material.from_henke: no tabulated index for {formula!r} "
                       f"at {energy_ev} eV (density {density_g_cm3}).")
    # periodictable writes n = 1 - delta - i beta.
    return cls(delta=1.0 - n.real, beta=-n.imag,
               name=f"{formula} (Henke, {float(energy_ev):.4g} eV)")

  @classmethod
  def from_xraydb(cls, formula: str, energy_ev: float,
                  density_g_cm3: float | None = None) -> "Material":
    """``xraydb.xray_delta_beta`` (Chantler's tables); density defaults to
    the element's (an error for compounds without one)."""
    try:
      import xraydb
    except ImportError:
      raise ImportError("Material.from_xraydb needs the 'xraydb' package "
                        "(pip install msftnet[physics]).") from None
    energy = _energy(energy_ev, "from_xraydb")
    try:
      density = (xraydb.atomic_density(formula) if density_g_cm3 is None
                 else float(density_g_cm3))
      delta, beta, _ = xraydb.xray_delta_beta(formula, density, energy)
    except Exception as e:      # xraydb raises many kinds for bad input
      raise ValueError(f"Material.from_xraydb: cannot evaluate {formula!r} at "
                       f"{energy_ev} eV (density {density_g_cm3}): {e}") from None
    return cls(delta=float(delta), beta=float(beta),
               name=f"{formula} (xraydb, {energy:.4g} eV)")


def _energy(energy_ev, where: str) -> float:
  e = float(energy_ev)
  if not (math.isfinite(e) and e > 0):
    raise ValueError(f"Material.{where}: energy_ev must be a positive number, "
                     f"got {energy_ev!r}.")
  return e


def parse_material(text: str, wavelength_nm: float) -> Material | None:
  """A material from a flag or config string, at ``wavelength_nm``.

  ``""`` or ``"paper"``: None (the paper's absorption-only setting of the
  geometry); ``"DELTA,BETA"``: those numbers; ``"henke:FORMULA"`` or
  ``"henke:FORMULA:DENSITY"``: Henke's tables at the photon energy of
  ``wavelength_nm``; ``"xraydb:FORMULA[:DENSITY]"``: xraydb's. Bad text
  raises ValueError with one sentence.
  """
  s = str(text).strip()
  if s in ("", "paper"):
    return None
  if ":" in s:
    source, _, rest = s.partition(":")
    formula, _, density = rest.partition(":")
    makers = {"henke": Material.from_henke, "xraydb": Material.from_xraydb}
    if source not in makers or not formula:
      raise ValueError(
          f"material {text!r}: expected 'henke:FORMULA[:DENSITY]' or "
          "'xraydb:FORMULA[:DENSITY]'.")
    try:
      dens = float(density) if density else None
    except ValueError:
      raise ValueError(f"material {text!r}: the density {density!r} is not a "
                       "number (g/cm^3).") from None
    return makers[source](formula, HC_EV_NM / float(wavelength_nm), dens)
  parts = s.split(",")
  try:
    delta, beta = (float(p) for p in parts)
  except ValueError:
    raise ValueError(
        f"material {text!r}: expected '' (the paper's), 'DELTA,BETA', "
        "'henke:FORMULA[:DENSITY]' or 'xraydb:FORMULA[:DENSITY]'.") from None
  return Material(delta=delta, beta=beta, name=f"delta={delta:g}, beta={beta:g}")
