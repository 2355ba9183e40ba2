"""Material: the refractive index, its conversions and the tables."""

import math

import pytest

from msftnet import Geometry
from msftnet import Material
from msftnet.material import HC_EV_NM
from msftnet.material import parse_material

EUV_EV = HC_EV_NM / 13.5          # 91.84 eV


def test_the_papers_setting_is_a_material():
  g = Geometry()
  m = g.refractive_index
  assert m.delta == 0.0
  # amplitude 1/e length 12.5 nm <=> beta = lambda / (2 pi 12.5 nm)
  assert m.beta == pytest.approx(13.5 / (2 * math.pi * 12.5), rel=1e-12)
  assert m.amplitude_attenuation_length_nm(13.5) == pytest.approx(12.5)
  assert m.intensity_attenuation_length_nm(13.5) == pytest.approx(6.25)
  as_material = Geometry(material=m)
  assert as_material.amplitude_attenuation_per_nm == pytest.approx(
      g.amplitude_attenuation_per_nm, rel=1e-12)
  assert as_material.phase_shift_per_nm == 0.0 == g.phase_shift_per_nm
  # The intensity convention: the amplitude decays over twice the length.
  gi = Geometry(absorption_length_nm=13.5, absorption="intensity")
  assert gi.refractive_index.amplitude_attenuation_length_nm(13.5) == (
      pytest.approx(27.0))
  assert Geometry(absorption_length_nm=math.inf).refractive_index.beta == 0.0


def test_geometry_with_a_material_round_trips_and_hashes():
  m = Material(0.11, 0.079, "Ag")
  g = Geometry(material=m, forward_model="pmsft")
  assert Geometry.from_dict(g.to_dict()) == g
  assert hash(Geometry.from_dict(g.to_dict())) == hash(g)
  assert g.phase_shift_per_nm == pytest.approx(0.11 * 2 * math.pi / 13.5)
  assert g.amplitude_attenuation_per_nm == pytest.approx(0.079 * 2 * math.pi / 13.5)
  assert Geometry.from_dict(Geometry().to_dict()) == Geometry()


@pytest.mark.parametrize("kwargs, match", [
    (dict(material=Material(0.1, 0.1), absorption_length_nm=20.0), "either"),
    (dict(material=(0.1, 0.1)), "msftnet.Material"),
    (dict(forward_model="mie"), "forward_model"),
])
def test_geometry_refuses_conflicts(kwargs, match):
  with pytest.raises(ValueError, match=match):
    Geometry(**kwargs)


@pytest.mark.parametrize("delta, beta", [(math.nan, 0.1), (0.1, -0.01),
                                         (0.1, math.inf), ("x", 0.1)])
def test_material_refuses_bad_numbers(delta, beta):
  with pytest.raises(ValueError, match="Material"):
    Material(delta, beta)


def test_henke_tables_through_periodictable():
  """delta, beta = r0 lambda^2 n_atoms (f1, f2) / (2 pi) from Henke's
  scattering factors: silver at 13.5 nm is n = 0.890 + 0.079 i."""
  pt = pytest.importorskip("periodictable")
  m = Material.from_henke("Ag", EUV_EV)
  f1, f2 = pt.Ag.xray.scattering_factors(energy=EUV_EV / 1000)
  r0_nm = 2.8179403262e-6
  atoms_per_nm3 = pt.Ag.density * 6.02214076e23 / pt.Ag.mass * 1e-21
  scale = r0_nm * 13.5**2 * atoms_per_nm3 / (2 * math.pi)
  assert m.delta == pytest.approx(scale * f1, rel=2e-3)
  assert m.beta == pytest.approx(scale * f2, rel=2e-3)
  assert (m.delta, m.beta) == pytest.approx((0.110, 0.079), abs=1.5e-3)
  # Its intensity attenuation length: about 13.5 nm, as physics.md says.
  assert m.intensity_attenuation_length_nm(13.5) == pytest.approx(13.5, rel=0.03)


def test_xraydb_tables_and_their_attenuation_length():
  xraydb = pytest.importorskip("xraydb")
  m = Material.from_xraydb("Ag", 1000.0)
  delta, beta, atlen_cm = xraydb.xray_delta_beta("Ag", 10.49, 1000.0)
  assert (m.delta, m.beta) == pytest.approx((delta, beta), rel=2e-3)
  wavelength = HC_EV_NM / 1000.0
  assert m.intensity_attenuation_length_nm(wavelength) == pytest.approx(
      atlen_cm * 1e7, rel=2e-3)


def test_parse_material():
  assert parse_material("", 13.5) is None
  assert parse_material("paper", 13.5) is None
  m = parse_material("0.11, 0.079", 13.5)
  assert (m.delta, m.beta) == (0.11, 0.079)
  pt = pytest.importorskip("periodictable")
  h = parse_material("henke:Ag", 13.5)
  assert h == Material.from_henke("Ag", EUV_EV)
  denser = parse_material(f"henke:Ag:{2 * pt.Ag.density}", 13.5)
  assert denser.delta == pytest.approx(2 * h.delta, rel=1e-6)


@pytest.mark.parametrize("text", ["0.1", "a,b", "0.1,0.2,0.3", "cxro:Ag",
                                  "henke:", "henke:Ag:dense", "henke:Xx"])
def test_parse_material_errors_are_one_sentence(text):
  pytest.importorskip("periodictable")
  with pytest.raises(ValueError) as e:
    parse_material(text, 13.5)
  msg = str(e.value)
  assert "\n" not in msg and repr(text) in msg or "Xx" in msg
