"""Convex solids: the 21-shape basis of Stielow & Scheel (2021), Fig. 1.

Every solid reduces to an intersection of half-spaces ``n . r <= d`` (plus an
ellipsoid for the sphere), in *box units*: the box spans ``[-1/2, 1/2]^3``
about its centre, ``r = (z, y, x)`` in our axis order. The classes:

* 17 uniform polyhedra from exact vertex coordinates: the five Platonic
  solids and all Archimedean solids but the snub dodecahedron (the snub cube
  is included, in one chiral form);
* ``Decahedron``: the pentagonal bipyramid with equilateral faces (Johnson
  solid J13; the shape of a five-fold twinned Ino/Marks-free decahedral
  cluster), symmetry D_5h;
* ``Truncated Twinned Tetrahedron``: two regular tetrahedra twinned on a
  shared face (a triangular bipyramid) with all five corners cut off at a
  third of the edge length, i.e. the convex hull of the points at 1/3 and
  2/3 along every edge. Its twin axis is three-fold; the paper's metadata
  labels the class ``C_6`` and that axis ``C6`` (its equatorial section is a
  hexagon), and we keep those labels for the CSV;
* ``Sphere`` and ``Potato`` (the convex hull of 50 random points).

Parameters of one solid (:class:`SolidParams`), with the paper's CSV columns
(``polyhedron, symm, theta, phi, alpha, size, stretch, axis`` and, for the
test set, ``cut, caxis``). Our conventions (the paper's generator was never
published; these reproduce its metadata's marginal distributions):

* ``size``: circumradius of the unstretched solid as a fraction of half the
  box edge (0.2-1.0), measured on the paper's volumes to within voxelisation;
* ``stretch``: scale factor along the named symmetry axis (0.5-2.0; spheres
  along a random unit vector, written ``{x,y,z}`` as in the paper); a
  stretched solid that would reach beyond 0.98 of the half box is scaled
  down to fit;
* rotation: by ``alpha`` about the unit vector of polar angle ``theta`` and
  azimuth ``phi``: ``u = (cos theta, sin theta sin phi, sin theta cos phi)``
  in (z, y, x), applied after the stretch;
* ``cut``: keep ``n . r <= cut * h(n)`` for the (rotated) symmetry axis
  ``n`` named by ``caxis``, ``h`` the solid's support distance along ``n``
  (1.0: no cut).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import numpy as np
from scipy.spatial import ConvexHull

__all__ = [
    "CLASSES",
    "POLYHEDRA",
    "SolidParams",
    "base_polyhedron",
    "symmetry_group",
    "symmetry_axes",
    "axis_labels",
    "half_spaces",
    "sample_solid",
    "example_density",
    "volume",
]

PHI = (1 + math.sqrt(5)) / 2
TRIBONACCI = (1 + (19 + 3 * math.sqrt(33)) ** (1 / 3)
              + (19 - 3 * math.sqrt(33)) ** (1 / 3)) / 3

#: The 21 class names, as in the ``polyhedron`` column of the paper's CSVs.
CLASSES: tuple[str, ...] = (
    "Tetrahedron", "Cube", "Octahedron", "Dodecahedron", "Icosahedron",
    "Truncated Tetrahedron", "Cuboctahedron", "Truncated Cube",
    "Truncated Octahedron", "Rhombicuboctahedron", "Truncated Cuboctahedron",
    "Snub Cube", "Icosidodecahedron", "Truncated Dodecahedron",
    "Truncated Icosahedron", "Rhombicosidodecahedron",
    "Truncated Rhombicosidodecahedron", "Decahedron",
    "Truncated Twinned Tetrahedron", "Sphere", "Potato")

#: The 19 classes with a fixed vertex set.
POLYHEDRA: tuple[str, ...] = CLASSES[:19]

_SYMMETRY = {
    "Tetrahedron": "T_d", "Truncated Tetrahedron": "T_d",
    "Snub Cube": "O", "Decahedron": "D_5h",
    "Truncated Twinned Tetrahedron": "C_6", "Sphere": "SO(3)",
    "Potato": "None",
}
for _n in ("Cube", "Octahedron", "Cuboctahedron", "Truncated Cube",
           "Truncated Octahedron", "Rhombicuboctahedron",
           "Truncated Cuboctahedron"):
  _SYMMETRY[_n] = "O_h"
for _n in ("Dodecahedron", "Icosahedron", "Icosidodecahedron",
           "Truncated Dodecahedron", "Truncated Icosahedron",
           "Rhombicosidodecahedron", "Truncated Rhombicosidodecahedron"):
  _SYMMETRY[_n] = "I_h"

MAX_PLANES = 128           # half-spaces per solid, padded (raster is static)
POTATO_POINTS = 50
FIT_RADIUS = 0.98          # largest circumradius, in half-box units


# ------------------------------------------------------------- coordinates
def _signs(v):
  """All sign combinations of the non-zero entries of v."""
  v = np.asarray(v, float)
  out = set()
  for s in itertools.product((1, -1), repeat=3):
    out.add(tuple(np.where(v != 0, v * s, 0.0)))
  return [np.array(p) for p in out]


def _cyclic(v):
  v = list(v)
  return [np.array(v[i:] + v[:i]) for i in range(3)]


def _all_perms(v):
  return [np.array(p) for p in set(itertools.permutations(v))]


def _expand(bases, perms):
  pts = []
  for b in bases:
    for s in _signs(b):
      pts.extend(perms(s))
  return _unique(np.array(pts))


def _unique(points, tol=1e-9):
  out = []
  for p in points:
    if not any(np.linalg.norm(p - q) < tol for q in out):
      out.append(p)
  return np.array(out)


def _snub_cube():
  t = TRIBONACCI
  base = (1.0, 1.0 / t, t)
  even = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
  odd = [(1, 0, 2), (0, 2, 1), (2, 1, 0)]
  pts = []
  for s in itertools.product((1, -1), repeat=3):
    plus = sum(x > 0 for x in s)
    v = [base[i] * s[i] for i in range(3)]
    perms = even if plus % 2 == 1 else odd
    for p in perms:
      pts.append([v[p[0]], v[p[1]], v[p[2]]])
  return _unique(np.array(pts))


def _twinned_truncated_tetrahedron():
  # Triangular bipyramid of two regular tetrahedra sharing a face (edge 1):
  # the shared face in the plane z = 0, apexes on the z axis.
  r = 1 / math.sqrt(3)
  ring = [np.array([0.0, r * math.cos(a), r * math.sin(a)])
          for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
  h = math.sqrt(2 / 3)
  apex = [np.array([h, 0, 0]), np.array([-h, 0, 0])]
  verts = ring + apex
  edges = [(0, 1), (1, 2), (2, 0)] + [(i, j) for i in range(3) for j in (3, 4)]
  pts = []
  for i, j in edges:
    a, b = verts[i], verts[j]
    pts += [a + (b - a) / 3, a + 2 * (b - a) / 3]
  return _unique(np.array(pts))


def _decahedron():
  ring = [np.array([0.0, math.sin(2 * math.pi * i / 5),
                    math.cos(2 * math.pi * i / 5)]) for i in range(5)]
  h = math.sqrt(4 * math.sin(math.pi / 5) ** 2 - 1)   # equilateral faces
  return np.array(ring + [[h, 0, 0], [-h, 0, 0]])


def _raw_vertices(name: str) -> np.ndarray:
  p = PHI
  ip = 1 / p
  cyc, perm = _cyclic, _all_perms
  table = {
      "Tetrahedron": lambda: np.array(
          [[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float),
      "Cube": lambda: _expand([(1, 1, 1)], cyc),
      "Octahedron": lambda: _expand([(1, 0, 0)], cyc),
      "Dodecahedron": lambda: _expand([(1, 1, 1), (0, ip, p)], cyc),
      "Icosahedron": lambda: _expand([(0, 1, p)], cyc),
      "Truncated Tetrahedron": lambda: np.array(
          [v for v in _expand([(3, 1, 1)], perm) if np.prod(np.sign(v)) > 0]),
      "Cuboctahedron": lambda: _expand([(1, 1, 0)], perm),
      "Truncated Cube": lambda: _expand([(math.sqrt(2) - 1, 1, 1)], perm),
      "Truncated Octahedron": lambda: _expand([(0, 1, 2)], perm),
      "Rhombicuboctahedron": lambda: _expand([(1, 1, 1 + math.sqrt(2))], perm),
      "Truncated Cuboctahedron": lambda: _expand(
          [(1, 1 + math.sqrt(2), 1 + 2 * math.sqrt(2))], perm),
      "Snub Cube": _snub_cube,
      "Icosidodecahedron": lambda: _expand(
          [(0, 0, p), (0.5, p / 2, p * p / 2)], cyc),
      "Truncated Dodecahedron": lambda: _expand(
          [(0, ip, 2 + p), (ip, p, 2 * p), (p, 2, p + 1)], cyc),
      "Truncated Icosahedron": lambda: _expand(
          [(0, 1, 3 * p), (1, 2 + p, 2 * p), (p, 2, 2 * p + 1)], cyc),
      "Rhombicosidodecahedron": lambda: _expand(
          [(1, 1, p**3), (p**2, p, 2 * p), (2 + p, 0, p**2)], cyc),
      "Truncated Rhombicosidodecahedron": lambda: _expand(
          [(ip, ip, 3 + p), (2 * ip, p, 1 + 2 * p), (ip, p**2, -1 + 3 * p),
           (2 * p - 1, 2, 2 + p), (p, 3, 2 * p)], cyc),
      "Decahedron": _decahedron,
      "Truncated Twinned Tetrahedron": _twinned_truncated_tetrahedron,
  }
  if name not in table:
    raise ValueError(f"solids: {name!r} has no fixed vertex set; expected one "
                     f"of {', '.join(POLYHEDRA)}.")
  return np.asarray(table[name](), float)


@functools.lru_cache(maxsize=None)
def _base(name: str) -> np.ndarray:
  v = _raw_vertices(name)
  v = v - v.mean(axis=0)
  v = v / np.linalg.norm(v, axis=1).max()
  v.setflags(write=False)
  return v


def base_polyhedron(name: str) -> np.ndarray:
  """Vertices ``[V, 3]`` of a polyhedral class, centred, circumradius 1."""
  return _base(name).copy()


# ------------------------------------------------------------ half-spaces
def _hull_planes(points: np.ndarray, tol: float = 1e-7):
  """Facet planes ``(normals [F, 3], offsets [F])`` of the convex hull,
  coplanar triangles merged; plus the hull for edge counting."""
  hull = ConvexHull(points)
  normals, offsets = [], []
  for eq in hull.equations:
    n, d = eq[:3], -eq[3]
    if not any(np.linalg.norm(n - m) < tol and abs(d - e) < tol
               for m, e in zip(normals, offsets)):
      normals.append(n)
      offsets.append(d)
  return np.array(normals), np.array(offsets), hull


def face_planes(name: str) -> tuple[np.ndarray, np.ndarray]:
  """Face planes of a polyhedral class (circumradius 1): ``n . r <= d``."""
  n, d, _ = _hull_planes(_base(name))
  return n, d


def face_counts(points: np.ndarray) -> tuple[int, int, int]:
  """(V, E, F) of the convex hull of ``points`` with coplanar facets merged."""
  normals, offsets, hull = _hull_planes(points)
  face_of = []
  for eq in hull.equations:
    face_of.append(int(np.argmin(np.linalg.norm(normals - eq[:3], axis=1)
                                 + np.abs(offsets + eq[3]))))
  edges = set()
  for i, simplex in enumerate(hull.simplices):
    for j in hull.neighbors[i]:
      if face_of[i] != face_of[j]:
        shared = tuple(sorted(set(simplex) & set(hull.simplices[j])))
        edges.add(shared)
  return len(hull.vertices), len(edges), len(normals)


# --------------------------------------------------------------- symmetry
def _rotation(axis, angle) -> np.ndarray:
  """Rotation matrix by ``angle`` about unit ``axis`` (Rodrigues)."""
  a = np.asarray(axis, float)
  a = a / np.linalg.norm(a)
  k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
  return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _invariant(points, rot, tol=1e-6) -> bool:
  moved = points @ rot.T
  d = np.linalg.norm(moved[:, None] - points[None], axis=-1)
  return bool(np.all(d.min(axis=1) < tol))


@functools.lru_cache(maxsize=None)
def _axes(name: str) -> dict[int, np.ndarray]:
  v = _base(name)
  normals, _ = face_planes(name)
  _, _, hull = _hull_planes(v)
  cand = list(v) + list(normals)
  for s in hull.simplices:
    for i, j in itertools.combinations(s, 2):
      cand.append((v[i] + v[j]) / 2)
  found: dict[int, list] = {}
  seen: list = []
  for c in cand:
    if np.linalg.norm(c) < 1e-9:
      continue
    c = c / np.linalg.norm(c)
    if any(abs(abs(np.dot(c, s)) - 1) < 1e-7 for s in seen):
      continue
    seen.append(c)
    for order in (6, 5, 4, 3, 2):
      if _invariant(v, _rotation(c, 2 * math.pi / order)):
        found.setdefault(order, []).append(c)
        break
  return {k: np.array(found[k]) for k in sorted(found)}


def symmetry_group(name: str) -> str:
  """The ``symm`` label of a class (``O_h``, ``I_h``, ``T_d``, ``O``, ...)."""
  _check_class(name)
  return _SYMMETRY[name]


def symmetry_axes(name: str) -> dict[int, np.ndarray]:
  """Proper rotation axes by order: ``{n: unit axes [k, 3]}``, one per line.

  Computed from the vertex set: an axis of order n maps the solid onto
  itself under rotation by 2 pi / n (the highest such n is reported).
  """
  _check_class(name)
  if name not in POLYHEDRA:
    return {}
  return {k: a.copy() for k, a in _axes(name).items()}


def axis_labels(name: str) -> dict[str, np.ndarray]:
  """Axes by the paper's ``axis`` labels (``"C2"`` ... ``"C6"``).

  The same as :func:`symmetry_axes` except the twinned tetrahedron, whose
  three-fold twin axis the paper labels ``C6``.
  """
  out = {f"C{k}": a for k, a in symmetry_axes(name).items()}
  if name == "Truncated Twinned Tetrahedron":
    out = {"C6": out.pop("C3"), "C2": out["C2"]}
  return out


def _check_class(name: str) -> None:
  if name not in CLASSES:
    raise ValueError(f"solids: unknown class {name!r}; expected one of "
                     f"{', '.join(CLASSES)}.")


# -------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True)
class SolidParams:
  """One solid. Angles in radians; lengths in box units (see module doc).

  ``stretch_dir`` and ``cut_dir`` are unit vectors in the body frame (before
  rotation); ``points`` holds the potato's hull points (body frame, box
  units before scaling, circumradius 1 after centring).
  """

  polyhedron: str
  theta: float = 0.0
  phi: float = 0.0
  alpha: float = 0.0
  size: float = 0.5
  stretch: float = 1.0
  axis: str = ""
  stretch_dir: tuple[float, float, float] = (1.0, 0.0, 0.0)
  cut: float = 1.0
  caxis: str = ""
  cut_dir: tuple[float, float, float] = (1.0, 0.0, 0.0)
  points: tuple | None = None
  seed: int | None = None

  def __post_init__(self):
    _check_class(self.polyhedron)
    if not 0 < self.size <= 1.0 + 1e-9:
      raise ValueError(f"SolidParams.size must lie in (0, 1], got {self.size}.")
    if not 0 < self.stretch:
      raise ValueError(f"SolidParams.stretch must be positive, got {self.stretch}.")
    if not 0 < self.cut <= 1.0 + 1e-9:
      raise ValueError(f"SolidParams.cut must lie in (0, 1], got {self.cut}.")

  @property
  def symm(self) -> str:
    return _SYMMETRY[self.polyhedron]

  def rotation_matrix(self) -> np.ndarray:
    u = (math.cos(self.theta), math.sin(self.theta) * math.sin(self.phi),
         math.sin(self.theta) * math.cos(self.phi))
    return _rotation(u, self.alpha)

  def body_vertices(self) -> np.ndarray | None:
    """Unscaled, unstretched vertices (circumradius 1), or None for spheres."""
    if self.polyhedron == "Sphere":
      return None
    if self.polyhedron == "Potato":
      return np.asarray(self.points, float)
    return _base(self.polyhedron)

  def linear_map(self) -> np.ndarray:
    """``A`` with ``r = A b`` from body coordinates (circumradius 1) to box units."""
    d = np.asarray(self.stretch_dir, float)
    d = d / np.linalg.norm(d)
    stretch = np.eye(3) + (self.stretch - 1) * np.outer(d, d)
    scale = 0.5 * self.size
    verts = self.body_vertices()
    if verts is None:
      reach = max(self.stretch, 1.0)
    else:
      reach = np.linalg.norm(verts @ stretch.T, axis=1).max()
    scale = min(scale, 0.5 * FIT_RADIUS / reach)
    return self.rotation_matrix() @ stretch * scale

  # ------------------------------------------------------------- csv rows
  def to_row(self) -> dict[str, str]:
    """The paper's CSV columns (plus ``cut, caxis`` and our ``seed``)."""
    axis = self.axis
    if self.polyhedron == "Sphere":
      axis = "{" + ",".join(f"{x:.6g}" for x in self.stretch_dir) + "}"
    stretch = "" if self.polyhedron == "Potato" else f"{self.stretch:.6g}"
    return {
        "polyhedron": self.polyhedron, "symm": self.symm,
        "theta": f"{self.theta:.6g}", "phi": f"{self.phi:.6g}",
        "alpha": f"{self.alpha:.6g}", "size": f"{self.size:.6g}",
        "stretch": stretch, "axis": axis,
        "cut": f"{self.cut:.6g}", "caxis": self.caxis,
        "seed": "" if self.seed is None else str(self.seed),
    }

  @classmethod
  def from_row(cls, row: dict) -> "SolidParams":
    """Parse a row of the paper's CSV (``csv.DictReader``); see :func:`read_row`.

    A potato's hull points are regenerated from ``seed`` (our writer's extra
    column); the paper's own potato rows carry none and get points from seed 0.
    """
    name = row["polyhedron"]
    _check_class(name)
    axis = (row.get("axis") or "").strip()
    stretch = float(row["stretch"]) if row.get("stretch") else 1.0
    kwargs = dict(polyhedron=name, theta=float(row["theta"]),
                  phi=float(row["phi"]), alpha=float(row["alpha"]),
                  size=float(row["size"]), stretch=stretch, axis=axis)
    seed = int(row["seed"]) if row.get("seed") else None
    if name == "Sphere":
      if axis.startswith("{"):
        vec = [float(x) for x in axis.strip("{}").split(",")]
        kwargs["stretch_dir"] = tuple(vec)
      kwargs["axis"] = ""
    elif name == "Potato":
      kwargs["points"] = potato_points(seed or 0)
    elif axis:
      kwargs["stretch_dir"] = tuple(axis_labels(name)[axis][0])
    cut = row.get("cut")
    if cut not in (None, ""):
      kwargs["cut"] = float(cut)
      caxis = (row.get("caxis") or "").strip()
      kwargs["caxis"] = caxis
      if caxis and name in POLYHEDRA:
        kwargs["cut_dir"] = tuple(axis_labels(name)[caxis][0])
    kwargs["seed"] = seed
    return cls(**kwargs)


def read_row(row: dict) -> dict:
  """Undo the paper's unquoted ``{x,y,z}`` sphere axis spilling into extra
  fields of a ``csv.DictReader`` row (they land under the key ``None``)."""
  row = dict(row)
  extra = row.pop(None, None)
  if extra and (row.get("axis") or "").startswith("{"):
    row["axis"] = ",".join([row["axis"]] + list(extra))
  return row


# ------------------------------------------------------------ half-spaces
def half_spaces(params: SolidParams, max_planes: int = MAX_PLANES):
  """Reduce a solid to padded half-spaces and an ellipsoid, in box units.

  Returns:
    ``normals [P, 3]`` (unit, (z, y, x)), ``offsets [P]`` (inside where
    ``n . r <= d``; padding rows have ``n = 0, d = 1``), and ``quadric
    [3, 3]``: inside the ellipsoid where ``r^T Q r <= 1`` (zeros: no
    ellipsoid, used by polyhedra).
  """
  a = params.linear_map()
  verts = params.body_vertices()
  normals, offsets = [], []
  quadric = np.zeros((3, 3))
  if verts is None:                                   # sphere -> ellipsoid
    a_inv = np.linalg.inv(a)
    quadric = a_inv.T @ a_inv
  else:
    if params.polyhedron == "Potato":
      n_b, d_b, _ = _hull_planes(verts)
    else:
      n_b, d_b = face_planes(params.polyhedron)
    # n_b . b <= d_b with b = A^-1 r  ->  (A^-T n_b) . r <= d_b
    n_r = n_b @ np.linalg.inv(a)
    norm = np.linalg.norm(n_r, axis=1)
    normals += list(n_r / norm[:, None])
    offsets += list(d_b / norm)
  if params.cut < 1.0:
    n = a @ np.asarray(params.cut_dir, float)          # axis in box frame
    n = n / np.linalg.norm(n)
    if verts is None:
      h = math.sqrt(n @ np.linalg.inv(quadric) @ n)    # ellipsoid support
    else:
      h = float(np.max((verts @ a.T) @ n))
    normals.append(n)
    offsets.append(params.cut * h)
  if len(normals) > max_planes:
    raise ValueError(f"solids: {params.polyhedron} needs {len(normals)} "
                     f"half-spaces, more than max_planes={max_planes}.")
  pad = max_planes - len(normals)
  normals = np.concatenate([np.reshape(normals, (-1, 3)), np.zeros((pad, 3))])
  offsets = np.concatenate([np.asarray(offsets, float), np.ones(pad)])
  return (normals.astype(np.float32), offsets.astype(np.float32),
          quadric.astype(np.float32))


def volume(params: SolidParams) -> float:
  """Exact volume in box units^3 (polyhedra via their hull, spheres analytic;
  cut spheres by the spherical-cap formula in the stretched frame)."""
  a = params.linear_map()
  verts = params.body_vertices()
  if verts is None:
    full = 4 / 3 * math.pi * abs(np.linalg.det(a))
    if params.cut >= 1.0:
      return full
    t = params.cut                      # cap of height (1 - t) on a unit ball
    cap = math.pi * (1 - t) ** 2 * (2 + t) / 3
    return full * (1 - cap / (4 / 3 * math.pi))
  if params.cut >= 1.0:
    return float(ConvexHull(verts @ a.T).volume)
  n, d, _ = half_spaces(params)
  from scipy.spatial import HalfspaceIntersection
  active = np.linalg.norm(n, axis=1) > 0
  hs = np.concatenate([n[active], -d[active, None]], axis=1).astype(float)
  pts = HalfspaceIntersection(hs, np.zeros(3)).intersections
  return float(ConvexHull(pts).volume)


# ---------------------------------------------------------------- sampling
def potato_points(seed: int) -> tuple:
  """The potato of ``seed``: 50 points uniform in a ball, centred on their
  hull's vertex mean, circumradius 1 (a stream of its own, so the CSV's
  ``seed`` column regenerates it)."""
  rng = np.random.default_rng([int(seed), 1])
  pts = rng.normal(size=(POTATO_POINTS, 3))
  pts /= np.linalg.norm(pts, axis=1, keepdims=True)
  pts *= rng.uniform(0, 1, size=(POTATO_POINTS, 1)) ** (1 / 3)
  hull_pts = pts[ConvexHull(pts).vertices]
  pts = pts - hull_pts.mean(axis=0)
  pts /= np.linalg.norm(pts, axis=1).max()
  return tuple(map(tuple, np.round(pts, 12)))


def _rng(key_or_seed) -> tuple[np.random.Generator, int]:
  """A numpy Generator from an int seed or a JAX PRNG key."""
  if isinstance(key_or_seed, (int, np.integer)):
    seed = int(key_or_seed)
  else:
    import jax
    data = np.asarray(jax.random.key_data(key_or_seed)).ravel()
    seed = int(np.uint64(data[-1]) | (np.uint64(data[0]) << np.uint64(32)))
  return np.random.default_rng(seed), seed


def random_orientation(rng: np.random.Generator) -> tuple[float, float,
                                                          float]:
  """``(theta, phi, alpha)`` as the generator draws them: the rotation axis
  uniform on the sphere (``cos theta`` uniform), ``phi`` and the angle
  ``alpha`` uniform in [-pi, pi) (not uniform over rotations)."""
  return (float(np.arccos(rng.uniform(-1, 1))),
          float(rng.uniform(-np.pi, np.pi)),
          float(rng.uniform(-np.pi, np.pi)))


def sample_solid(key_or_seed, *, test_set: bool = False,
                 classes: tuple[str, ...] = CLASSES) -> SolidParams:
  """Draw one solid with the paper's marginal distributions.

  Class uniform over ``classes``; rotation axis uniform on the sphere
  (``cos theta`` uniform), ``phi, alpha`` uniform in [-pi, pi) (spheres: all
  three 0, as in the paper's metadata); ``size`` uniform in [0.2, 1.0];
  ``stretch`` from the paper's empirical distribution on [0.5, 2.0] along a
  symmetry axis whose order is uniform among the class's orders (spheres: a
  random direction; potatoes: none). ``test_set`` adds a cut at a fraction
  uniform in [0.2, 1.0] perpendicular to a random symmetry axis (spheres: a
  random direction), as the paper's test set of truncated solids.

  Args:
    key_or_seed: an int seed or a JAX PRNG key; the same value always gives
      the same solid.
  """
  rng, seed = _rng(key_or_seed)
  name = classes[int(rng.integers(len(classes)))]
  size = float(rng.uniform(0.2, 1.0))
  stretch = float(np.interp(rng.uniform(), np.linspace(0, 1, 21),
                            _STRETCH_Q))
  kwargs = dict(polyhedron=name, size=size, seed=seed)
  if name == "Sphere":
    kwargs.update(stretch=stretch, stretch_dir=tuple(_unit(rng)))
  else:
    theta, phi, alpha = random_orientation(rng)
    kwargs.update(theta=theta, phi=phi, alpha=alpha)
  if name == "Potato":
    kwargs["points"] = potato_points(seed)
  elif name != "Sphere":
    labels = axis_labels(name)
    label = sorted(labels)[int(rng.integers(len(labels)))]
    kwargs.update(stretch=stretch, axis=label,
                  stretch_dir=tuple(labels[label][0]))
  if test_set:
    kwargs["cut"] = float(rng.uniform(0.2, 1.0))
    if name in POLYHEDRA:
      labels = axis_labels(name)
      label = sorted(labels)[int(rng.integers(len(labels)))]
      axes = labels[label]
      kwargs.update(caxis=label,
                    cut_dir=tuple(axes[int(rng.integers(len(axes)))]))
    else:
      kwargs["cut_dir"] = tuple(_unit(rng))
  return SolidParams(**kwargs)


def _unit(rng) -> np.ndarray:
  v = rng.normal(size=3)
  return v / np.linalg.norm(v)


# The paper's stretch distribution (its generator is unpublished): the 0, 5,
# ..., 100 % quantiles of the 1049 stretch values in infos1.csv + infos14.csv
# of its published sample, end points set to the range 0.5 and 2.0.
_STRETCH_Q = (0.5, 0.5889, 0.6613, 0.729, 0.7793, 0.8571, 0.9156, 0.9861,
              1.0466, 1.0893, 1.1254, 1.175, 1.2217, 1.2796, 1.3411, 1.417,
              1.4942, 1.5924, 1.6967, 1.8325, 2.0)


def example_density(n: int = 64) -> np.ndarray:
  """The built-in example: a truncated octahedron, stretched and tilted."""
  from msftnet import raster
  params = SolidParams("Truncated Octahedron", theta=0.6, phi=0.4, alpha=0.9,
                       size=0.55, stretch=1.3, axis="C4",
                       stretch_dir=tuple(axis_labels("Truncated Octahedron")
                                         ["C4"][0]))
  return np.asarray(raster.rasterize(*half_spaces(params), n))
