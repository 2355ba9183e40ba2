"""Tests of the 21-class solid basis (msftnet.solids)."""

import csv
import io
import math
import pathlib

import jax
import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from msftnet import solids

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "paper"

# (V, E, F) of each polyhedral class.
COUNTS = {
    "Tetrahedron": (4, 6, 4), "Cube": (8, 12, 6), "Octahedron": (6, 12, 8),
    "Dodecahedron": (20, 30, 12), "Icosahedron": (12, 30, 20),
    "Truncated Tetrahedron": (12, 18, 8), "Cuboctahedron": (12, 24, 14),
    "Truncated Cube": (24, 36, 14), "Truncated Octahedron": (24, 36, 14),
    "Rhombicuboctahedron": (24, 48, 26),
    "Truncated Cuboctahedron": (48, 72, 26), "Snub Cube": (24, 60, 38),
    "Icosidodecahedron": (30, 60, 32), "Truncated Dodecahedron": (60, 90, 32),
    "Truncated Icosahedron": (60, 90, 32),
    "Rhombicosidodecahedron": (60, 120, 62),
    "Truncated Rhombicosidodecahedron": (120, 180, 62),
    "Decahedron": (7, 15, 10), "Truncated Twinned Tetrahedron": (18, 30, 14),
}
UNIFORM = solids.POLYHEDRA[:17]
# Number of rotation axes per order for each symmetry group.
AXES = {"O_h": {2: 6, 3: 4, 4: 3}, "O": {2: 6, 3: 4, 4: 3},
        "I_h": {2: 15, 3: 10, 5: 6}, "T_d": {2: 3, 3: 4},
        "D_5h": {2: 5, 5: 1}, "C_6": {2: 3, 3: 1}}


def test_class_names():
  assert len(solids.CLASSES) == 21 and len(set(solids.CLASSES)) == 21
  assert set(solids.POLYHEDRA) == set(COUNTS)
  assert solids.CLASSES[-2:] == ("Sphere", "Potato")
  names = {r["polyhedron"] for r in _fixture_rows()}
  assert names <= set(solids.CLASSES)


@pytest.mark.parametrize("name", solids.POLYHEDRA)
def test_counts_and_euler(name):
  v = solids.base_polyhedron(name)
  assert np.allclose(v.mean(axis=0), 0, atol=1e-12)
  assert np.linalg.norm(v, axis=1).max() == pytest.approx(1.0)
  n_v, n_e, n_f = solids.face_counts(v)
  assert (n_v, n_e, n_f) == COUNTS[name]
  assert n_v - n_e + n_f == 2


@pytest.mark.parametrize("name", UNIFORM)
def test_uniform_solids_have_one_radius_and_one_edge_length(name):
  v = solids.base_polyhedron(name)
  np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
  d = np.linalg.norm(v[:, None] - v[None], axis=-1)
  shortest = d[d > 1e-9].min()
  n_edges = int(np.sum(np.abs(d - shortest) < 1e-9) // 2)
  # Every edge has the shortest length: as many such pairs as edges.
  assert n_edges == COUNTS[name][1]


@pytest.mark.parametrize("name", solids.POLYHEDRA)
def test_invariant_under_rotation_about_each_axis(name):
  v = solids.base_polyhedron(name)
  tree = cKDTree(v)
  axes = solids.symmetry_axes(name)
  assert {k: len(a) for k, a in axes.items()} == AXES[solids.symmetry_group(name)]
  for order, group in axes.items():
    for axis in group:
      rot = Rotation.from_rotvec(axis * 2 * math.pi / order)
      dist, _ = tree.query(rot.apply(v))
      assert dist.max() < 1e-9
      # ... and not under a finer rotation (the order is exact).
      finer = Rotation.from_rotvec(axis * 2 * math.pi / (2 * order))
      assert tree.query(finer.apply(v))[0].max() > 1e-3


def test_snub_cube_is_chiral():
  v = solids.base_polyhedron("Snub Cube")
  dist, _ = cKDTree(v).query(v * np.array([1.0, 1.0, -1.0]))
  assert dist.max() > 1e-3                      # mirror image differs


def _fixture_rows():
  rows = []
  for name in ("infos1.csv", "infos14.csv"):
    with open(FIXTURES / name, newline="") as f:
      rows += [solids.read_row(r) for r in csv.DictReader(f)]
  return rows


def test_paper_metadata_labels():
  for row in _fixture_rows():
    assert solids.symmetry_group(row["polyhedron"]) == row["symm"]
    params = solids.SolidParams.from_row(row)
    if row["axis"]:
      assert row["axis"] in solids.axis_labels(row["polyhedron"])
      assert params.stretch == pytest.approx(float(row["stretch"]))
  assert set(solids.axis_labels("Truncated Twinned Tetrahedron")) == {"C6", "C2"}
  assert set(solids.axis_labels("Tetrahedron")) == {"C2", "C3"}


def test_sphere_row_with_the_papers_unquoted_axis():
  text = ("nr,real,scatter,polyhedron,symm,theta,phi,alpha,size,stretch,axis\n"
          "6,./real/1/6r.png,./scatter/1/6s.png,Sphere,SO(3),0,0,0,0.35397,"
          "1.17387,{0.243576,0.0256029,-0.969544}\n")
  row = solids.read_row(next(csv.DictReader(io.StringIO(text))))
  p = solids.SolidParams.from_row(row)
  np.testing.assert_allclose(p.stretch_dir, [0.243576, 0.0256029, -0.969544])
  assert p.stretch == pytest.approx(1.17387)
  assert solids.SolidParams.from_row(p.to_row() | {"nr": "6"}) == p


def test_sampling_is_deterministic_and_follows_the_papers_marginals():
  a = [solids.sample_solid(i) for i in range(1200)]
  assert a[:20] == [solids.sample_solid(i) for i in range(20)]
  assert solids.sample_solid(jax.random.key(3)) == solids.sample_solid(
      jax.random.key(3))
  assert solids.sample_solid(jax.random.key(3)) != solids.sample_solid(
      jax.random.key(4))
  counts = np.array([sum(p.polyhedron == c for p in a) for c in solids.CLASSES])
  assert counts.min() > 30 and counts.max() < 90          # ~57 each
  size = np.array([p.size for p in a])
  assert 0.2 <= size.min() and size.max() <= 1.0 and abs(size.mean() - 0.6) < 0.03
  stretch = np.array([p.stretch for p in a if p.polyhedron != "Potato"])
  assert 0.5 <= stretch.min() and stretch.max() <= 2.0
  assert abs(np.median(stretch) - 1.125) < 0.06            # paper: 1.125
  cos_t = np.cos([p.theta for p in a if p.polyhedron != "Sphere"])
  assert abs(cos_t.mean()) < 0.05 and abs(np.mean(cos_t**2) - 1 / 3) < 0.03
  assert all(p.cut == 1.0 for p in a)
  cuts = [solids.sample_solid(i, test_set=True) for i in range(200)]
  c = np.array([p.cut for p in cuts])
  assert 0.2 <= c.min() and c.max() <= 1.0
  assert all(p.caxis for p in cuts if p.polyhedron in solids.POLYHEDRA)


def test_csv_round_trip():
  for i in range(60):
    p = solids.sample_solid(i, test_set=i % 2 == 0)
    row = {k: v for k, v in p.to_row().items()}
    q = solids.SolidParams.from_row(row)
    assert q.polyhedron == p.polyhedron and q.axis == p.axis
    for f in ("theta", "phi", "alpha", "size", "stretch", "cut"):
      assert getattr(q, f) == pytest.approx(getattr(p, f), rel=1e-5)
    np.testing.assert_allclose(q.stretch_dir, p.stretch_dir, atol=1e-5)
    np.testing.assert_allclose(q.linear_map(), p.linear_map(), atol=1e-5)
    if p.polyhedron == "Potato":
      np.testing.assert_allclose(q.points, p.points)


def test_half_spaces_contain_exactly_the_solid():
  for i in range(30):
    p = solids.sample_solid(i, test_set=i % 3 == 0)
    n, d, q = solids.half_spaces(p)
    assert n.shape == (solids.MAX_PLANES, 3) and d.shape == (solids.MAX_PLANES,)
    a = p.linear_map()
    verts = p.body_vertices()
    if verts is None:
      continue
    pts = verts @ a.T
    # All vertices satisfy all planes; every active plane touches a vertex
    # (or is the cut plane).
    active = np.flatnonzero(np.linalg.norm(n, axis=1) > 0)
    faces = active[:-1] if p.cut < 1.0 else active
    slack = pts @ n[faces].T - d[faces]
    assert slack.max() < 1e-5
    assert np.all(np.abs(slack).min(axis=0) < 1e-5)
    if p.cut < 1.0:                 # the cut plane: at `cut` of the support
      k = active[-1]
      assert d[k] == pytest.approx(p.cut * np.max(pts @ n[k]), rel=1e-5)
    # The solid fits in the box with margin.
    assert np.linalg.norm(pts, axis=1).max() <= 0.49 + 1e-6


def test_unknown_class_and_bad_parameters():
  with pytest.raises(ValueError, match="unknown class 'Blob'"):
    solids.SolidParams("Blob")
  with pytest.raises(ValueError, match="size must lie in"):
    solids.SolidParams("Cube", size=1.5)
  with pytest.raises(ValueError, match="no fixed vertex set"):
    solids.base_polyhedron("Sphere")
