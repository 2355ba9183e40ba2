"""Physical and detector parameters of the MSFT forward model.

The default values are the geometry of Stielow & Scheel, Phys. Rev. E 103,
053312 (2021), doi:10.1103/PhysRevE.103.053312: a 318.75 nm box sampled by
64^3 voxels, 13.5 nm light, silver absorption length 12.5 nm (applied to the
amplitude, as the paper's code does), a 128 x 128 detector whose pixel ``m``
sits at ``q = (m - M // 2) * dq`` with ``dq = 2 pi / 850 nm^-1``.

A :class:`Geometry` is a frozen, hashable dataclass: pass it as a *static*
argument under ``jax.jit``. Derived grids are returned as float64 numpy arrays
(compile-time constants), never as traced values.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from msftnet.material import Material
from msftnet.material import parse_material

__all__ = ["Geometry", "ABSORPTION_CONVENTIONS", "FORWARD_MODELS"]

#: The forward models a geometry can name: ``"msft"``, the paper's MSFT
#: (absorption only, :func:`msftnet.msft`), and ``"pmsft"``, the propagation
#: MSFT with refraction (:func:`msftnet.pmsft`).
FORWARD_MODELS = ("msft", "pmsft")

#: ``"amplitude"``: ``absorption_length_nm`` is the 1/e decay length of the
#: field amplitude (the paper's code). ``"intensity"``: it is the 1/e decay
#: length of the intensity (Henke tables), so the amplitude decays over twice
#: that length.
ABSORPTION_CONVENTIONS = ("amplitude", "intensity")


def _check_int(name: str, value, lo: int, hi: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"Geometry.{name} must be an integer, got {value!r}.")
  if not lo <= value <= hi:
    raise ValueError(
        f"Geometry.{name} must lie in [{lo}, {hi}], got {value}.")


def _check_positive(name: str, value, allow_inf: bool = False) -> None:
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"Geometry.{name} must be a number, got {value!r}.") from None
  if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
    allowed = "a positive number (or inf)" if allow_inf else "a positive finite number"
    raise ValueError(f"Geometry.{name} must be {allowed}, got {value!r}.")


#: The voxel edge of the paper's grid (64^3 in a 318.75 nm box), in nm.
PAPER_VOXEL_NM = 318.75 / 64


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Geometry of a single-shot wide-angle scattering experiment.

  Attributes:
    n_voxels: N, voxels per axis of the density grid ``[N, N, N]`` (z, y, x).
    box_nm: L, edge length of the cubic box in nm; voxel size ``dr = L / N``.
    wavelength_nm: lambda, photon wavelength in nm; ``k = 2 pi / lambda``.
    absorption_length_nm: a, the 1/e absorption length in nm (``math.inf``
      switches absorption off). Its meaning is set by ``absorption``.
    detector_px: M, detector pixels per axis; output fields are ``[M, M]``
      with rows qy and columns qx.
    q_step_per_nm: dq, momentum-transfer step between pixels in nm^-1.
    absorption: ``"amplitude"`` (default, the paper's convention: the field
      is attenuated as ``exp(-z / a)``) or ``"intensity"`` (``a`` is the
      intensity attenuation length of Henke's tables, the field is attenuated
      as ``exp(-z / (2 a))``). Silver at 91.8 eV has an intensity attenuation
      length of about 13.5 nm, i.e. an amplitude length of about 27 nm; the
      paper's 12.5 nm amplitude length is kept as default for reproduction.
    material: the particle's complex refractive index (:class:`Material`).
      ``None`` (default): the paper's absorption-only setting given by
      ``absorption_length_nm`` and ``absorption``
      (:attr:`refractive_index` states it as a Material). With a material,
      leave those two at their defaults.
    forward_model: ``"msft"`` (default, the paper's MSFT: it uses beta and
      drops delta) or ``"pmsft"`` (propagation MSFT with refraction); what
      :func:`msftnet.intensity`, and with it the data, losses, refinement and
      fitting, evaluate.
  """

  n_voxels: int = 64
  box_nm: float = 318.75
  wavelength_nm: float = 13.5
  absorption_length_nm: float = 12.5
  detector_px: int = 128
  q_step_per_nm: float = 2 * math.pi / 850.0
  absorption: str = "amplitude"
  material: Material | None = None
  forward_model: str = "msft"

  def __post_init__(self):
    _check_int("n_voxels", self.n_voxels, 1, 4096)
    _check_int("detector_px", self.detector_px, 1, 8192)
    _check_positive("box_nm", self.box_nm)
    _check_positive("wavelength_nm", self.wavelength_nm)
    _check_positive("absorption_length_nm", self.absorption_length_nm,
                    allow_inf=True)
    _check_positive("q_step_per_nm", self.q_step_per_nm)
    if self.absorption not in ABSORPTION_CONVENTIONS:
      raise ValueError(
          f"Geometry.absorption must be one of {ABSORPTION_CONVENTIONS}, "
          f"got {self.absorption!r}.")
    if self.forward_model not in FORWARD_MODELS:
      raise ValueError(
          f"Geometry.forward_model must be one of {FORWARD_MODELS}, "
          f"got {self.forward_model!r}.")
    if self.material is not None:
      if not isinstance(self.material, Material):
        raise ValueError("Geometry.material must be a msftnet.Material or "
                         f"None, got {self.material!r}.")
      if (float(self.absorption_length_nm) != Geometry.absorption_length_nm
          or self.absorption != Geometry.absorption):
        raise ValueError(
            "Geometry: give either a material or absorption_length_nm / "
            "absorption (the paper's absorption-only setting), not both.")
    # The voxel grid's spectrum repeats every 2 pi / dr; the detector spans
    # q in [-q_max, q_max], a band of width 2 q_max, which must fit into one
    # period: q_max dr <= pi (Nyquist), else q and q - 2 pi / dr alias.
    if self.q_max_per_nm * self.voxel_nm > math.pi:
      raise ValueError(
          f"Geometry: the detector reaches q = {self.q_max_per_nm:.3g} nm^-1, "
          f"beyond the Nyquist limit pi / dr = {math.pi / self.voxel_nm:.3g} "
          "nm^-1 of the voxel grid; use more voxels, a smaller "
          "q_step_per_nm or fewer detector_px.")

  # ----------------------------------------------------------------- scalars
  @property
  def voxel_nm(self) -> float:
    """dr = L / N, the voxel edge length in nm."""
    return float(self.box_nm) / self.n_voxels

  @property
  def loss_eps(self) -> float:
    """The constant of the loss pattern ``log(|E|^2 + eps)`` on this grid.

    The paper's ``eps = 100`` belongs to its 64^3 grid of the 318.75 nm box:
    ``E`` is a plain voxel sum, so the same particle's ``|E|^2`` scales as
    ``dr^-6``. ``eps = 100 (dr_paper / dr)^6`` keeps the same dark level
    relative to the particle's pattern on any grid (100 on the paper's).
    """
    return 100.0 * (PAPER_VOXEL_NM / self.voxel_nm) ** 6

  @property
  def k_per_nm(self) -> float:
    """k = 2 pi / lambda in nm^-1 (radius of the Ewald sphere)."""
    return 2 * math.pi / float(self.wavelength_nm)

  @property
  def q_max_per_nm(self) -> float:
    """Largest |q| along a detector axis, (M // 2) * dq."""
    return (self.detector_px // 2) * float(self.q_step_per_nm)

  @property
  def refractive_index(self) -> Material:
    """The material as a :class:`Material`: ``material`` if given, else the
    paper's setting (``delta = 0``, beta from the absorption length)."""
    if self.material is not None:
      return self.material
    return Material.from_attenuation_length(
        self.absorption_length_nm, self.wavelength_nm,
        convention=self.absorption, name="paper (absorption only)")

  @property
  def amplitude_attenuation_per_nm(self) -> float:
    """mu such that the field decays as exp(-mu * depth); 0 without absorption.

    ``k beta`` of the material; without one, ``1 / a`` (amplitude) or
    ``1 / (2 a)`` (intensity convention) exactly.
    """
    if self.material is not None:
      return self.k_per_nm * self.material.beta
    a = float(self.absorption_length_nm)
    if math.isinf(a):
      return 0.0
    return 1.0 / a if self.absorption == "amplitude" else 0.5 / a

  @property
  def phase_shift_per_nm(self) -> float:
    """``k delta``: the field's phase lags by ``exp(-i k delta depth)`` (0
    without a material); used by :func:`msftnet.pmsft`, dropped by ``msft``."""
    return 0.0 if self.material is None else self.k_per_nm * self.material.delta

  def with_physics(self, forward_model: str | None = None,
                   material: str | None = None) -> "Geometry":
    """A copy with another forward model and/or material, each left as it
    is when None.

    ``material`` is text as :func:`msftnet.material.parse_material` reads
    it, at this geometry's wavelength. A material replaces the paper's
    absorption-only setting: ``absorption_length_nm`` and ``absorption``
    return to their defaults (the material's beta sets the absorption).
    ``""``/``"paper"``: no material, this geometry's absorption setting
    kept. ValueError (one sentence) for text that names no material.
    """
    changes = {}
    if forward_model is not None:
      changes["forward_model"] = forward_model
    if material is not None:
      changes["material"] = parse_material(material, self.wavelength_nm)
      if changes["material"] is not None:
        changes.update(absorption_length_nm=Geometry.absorption_length_nm,
                       absorption=Geometry.absorption)
    return self.replace(**changes)

  def to_dict(self) -> dict:
    """JSON-ready fields (the material as a dict or None)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, fields: dict) -> "Geometry":
    """Inverse of :meth:`to_dict`; unknown keys are an error."""
    fields = dict(fields)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
      raise ValueError(f"Geometry: unknown fields {unknown}; known: {sorted(known)}.")
    if isinstance(fields.get("material"), dict):
      fields["material"] = Material(**fields["material"])
    return cls(**fields)

  def replace(self, **changes) -> "Geometry":
    """A copy with some fields changed (validated again)."""
    return dataclasses.replace(self, **changes)

  # ------------------------------------------------------------------- grids
  @property
  def q_axis(self) -> np.ndarray:
    """[M] float64, q of detector pixel m: (m - M // 2) * dq, in nm^-1."""
    m = self.detector_px
    return (np.arange(m) - m // 2) * float(self.q_step_per_nm)

  @property
  def q_grid(self) -> tuple[np.ndarray, np.ndarray]:
    """(qy, qx), each [M, M] float64 in nm^-1; rows qy, columns qx."""
    q = self.q_axis
    return np.meshgrid(q, q, indexing="ij")

  @property
  def ewald_mask(self) -> np.ndarray:
    """[M, M] bool, True where qx^2 + qy^2 < k^2 (a scattered wave exists)."""
    qy, qx = self.q_grid
    return qy**2 + qx**2 < self.k_per_nm**2

  @property
  def qz(self) -> np.ndarray:
    """[M, M] float64, qz = k - sqrt(k^2 - q^2) in nm^-1 (0 outside the sphere).

    The curvature of the Ewald sphere: the slice at depth ``z`` contributes
    with phase ``exp(+i qz z)``.
    """
    qy, qx = self.q_grid
    k = self.k_per_nm
    inside = qy**2 + qx**2 < k**2
    return np.where(inside, k - np.sqrt(np.maximum(k**2 - qx**2 - qy**2, 0.0)),
                    0.0)

  @property
  def scattering_angle_rad(self) -> np.ndarray:
    """[M, M] float64, scattering angle 2 theta = 2 asin(|q3| / 2k); nan outside."""
    qy, qx = self.q_grid
    q3 = np.sqrt(qy**2 + qx**2 + self.qz**2)
    return np.where(self.ewald_mask,
                    2 * np.arcsin(np.clip(q3 / (2 * self.k_per_nm), 0, 1)),
                    np.nan)

  @property
  def in_plane_nm(self) -> np.ndarray:
    """[N] float64, x (and y) of voxel i from the box centre: (i - (N-1)/2) dr."""
    n = self.n_voxels
    return (np.arange(n) - (n - 1) / 2) * self.voxel_nm

  @property
  def depth_nm(self) -> np.ndarray:
    """[N] float64, z coordinate of slice i: i * dr (the beam enters at 0)."""
    return np.arange(self.n_voxels) * self.voxel_nm
