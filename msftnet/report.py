"""Output files of a reconstruction or fit: volume, metrics, figure, mesh.

``write_result(out_dir, stem, ...)`` writes, each atomically (temporary file
renamed, so an interrupted run leaves no half-written file):

* ``STEM_density.npy``: float32 ``[64, 64, 64]``, (z, y, x), beam +z, the
  318.75 nm box;
* ``STEM.json``: the metrics dict given;
* ``STEM.png``: :func:`reconstruction_figure`;
* ``STEM_patterns.png``: the input beside the simulated pattern, 256 x 128
  pixels (:func:`pattern_thumbnail`; the run report shows it);
* ``STEM.obj`` (``mesh="obj"``; or ``"stl"``, ``"ply"``): the 0.5
  isosurface (scikit-image's marching cubes, trimesh's mesh and exporters)
  in nm, box centre at the origin, vertices as (x, y, z); ``STEM.json``
  then says whether it is watertight, and its volume and area.
"""

from __future__ import annotations

import io
import os

from matplotlib.figure import Figure
import numpy as np

from msftnet import records
from msftnet.geometry import Geometry
from msftnet.paper_io import atomic_write
from msftnet.paper_io import save_npy

__all__ = ["reconstruction_figure", "write_result", "pattern_thumbnail",
           "render_shape", "isosurface",
           "isosurface_mesh", "write_mesh",
           "MESH_FORMATS", "save_figure", "check_out_dir",
           "try_write_result"]


def check_out_dir(path) -> None:
  """Raise ``ValueError`` if ``path`` exists and is not a directory."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"--out={path} is a file, expected a directory.")


def save_figure(fig, path) -> None:
  """Save a matplotlib figure to PNG atomically.

  Figures here are ``matplotlib.figure.Figure`` objects made without pyplot:
  no global backend is set or used, and nothing stays registered to close.
  """
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  with atomic_write(path) as f:
    f.write(buf.getvalue())


def _extent(geometry: Geometry):
  half = geometry.box_nm / 2
  return (-half, half, -half, half)


def reconstruction_figure(pattern, valid, density, simulated, *,
                          geometry: Geometry, title: str = "",
                          truth=None):
  """A figure: input (mask outline), depth map, three views, simulated pattern.

  Args:
    pattern, valid: the input ``[M, M]`` and its valid mask.
    density: ``[N, N, N]`` the reconstruction.
    simulated: ``[M, M]`` its pattern.
    truth: optional ``[N, N, N]`` true density, shown as a second row.
  Returns:
    the matplotlib figure.
  """
  g = geometry
  rows = 1 if truth is None else 2
  fig = Figure(figsize=(21, 3.3 * rows))
  grid = fig.add_gridspec(rows, 7)
  axes = [[fig.add_subplot(grid[r, c]) for c in range(6)]
          + [fig.add_subplot(grid[r, 6], projection="3d")]
          for r in range(rows)]
  vols = [("reconstruction", density)] + ([] if truth is None
                                           else [("truth", truth)])
  for r, (label, vol) in enumerate(vols):
    ax = axes[r]
    if r == 0:
      ax[0].imshow(pattern, cmap="magma", vmin=0, vmax=1)
      if not np.all(valid):
        ax[0].contour(np.asarray(valid, float), levels=[0.5], colors="cyan",
                      linewidths=0.8)
      ax[0].set_title("input, valid region outlined")
      ax[5].imshow(np.where(valid, simulated, np.nan), cmap="magma", vmin=0,
                   vmax=1)
      ax[5].set_title("simulated (valid pixels)")
    else:
      ax[0].axis("off")
      ax[5].axis("off")
    vol = np.asarray(vol, np.float32)
    thickness = (vol > 0.5).sum(axis=0) * g.voxel_nm     # along the beam
    im = ax[1].imshow(thickness, cmap="viridis", extent=_extent(g),
                      origin="lower")
    fig.colorbar(im, ax=ax[1], fraction=0.046, label="nm")
    ax[1].set_title(f"{label}: thickness along beam")
    for k, (axis, name) in enumerate([(0, "view along beam z (y-x)"),
                                      (1, "view along y (z-x)"),
                                      (2, "view along x (z-y)")]):
      ax[2 + k].imshow(vol.max(axis=axis), cmap="gray", vmin=0, vmax=1,
                       extent=_extent(g), origin="lower")
      ax[2 + k].set_title(name)
    render_shape(ax[6], vol, g)
    ax[6].set_title(f"{label}: 3D (beam +z)")
    for a in ax[:6]:
      a.tick_params(labelsize=7)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return fig


def isosurface(density, geometry: Geometry, level: float = 0.5,
               step_size: int = 1):
  """Marching cubes of ``density [N, N, N]`` padded by one empty voxel (a
  particle touching the box gets a closed surface too): ``(vertices [V, 3]
  in nm, (z, y, x), box centre at the origin; faces [F, 3])``, or None when
  the density never crosses ``level``. ``step_size`` > 1: a coarser mesh
  (for drawing)."""
  from skimage import measure
  vol = np.pad(np.asarray(density, np.float32), 1)
  if not vol.min() < level < vol.max():
    return None
  verts, faces, _, _ = measure.marching_cubes(vol, level, step_size=step_size)
  g = geometry
  return (verts - 1 - (g.n_voxels - 1) / 2) * g.voxel_nm, faces


def render_shape(ax, density, geometry: Geometry, level: float = 0.5):
  """Draw the ``level`` isosurface of ``density`` shaded (a light from the
  upper left, flat faces) on a matplotlib 3D axis, nm, beam along +z."""
  from matplotlib.colors import LightSource
  from mpl_toolkits.mplot3d.art3d import Poly3DCollection
  g = geometry
  half = g.box_nm / 2
  surface = isosurface(density, g, level, step_size=2)
  if surface is not None:
    zyx, faces = surface
    tris = zyx[faces][..., ::-1]                     # (x, y, z) per corner
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = LightSource(azdeg=315, altdeg=45).direction
    shade = 0.35 + 0.65 * np.clip(np.abs(normals @ light), 0, 1)
    colour = np.array([0.85, 0.68, 0.2])
    ax.add_collection3d(Poly3DCollection(
        tris, facecolors=shade[:, None] * colour, edgecolors="none"))
    # Axes around the shape, not the box: small particles stay visible.
    half = min(half, 1.15 * float(np.abs(zyx).max()) + g.voxel_nm)
  ax.set(xlim=(-half, half), ylim=(-half, half), zlim=(-half, half))
  ax.set_box_aspect((1, 1, 1))
  ax.set_xlabel("x", fontsize=7)
  ax.set_ylabel("y", fontsize=7)
  ax.set_zlabel("z", fontsize=7)
  ax.tick_params(labelsize=5)


def pattern_thumbnail(pattern, valid, simulated) -> bytes:
  """PNG bytes, 256 x 128: the input (invalid pixels grey) beside the
  simulated pattern, both with the magma colour map on [0, 1]."""
  from matplotlib import colormaps
  from PIL import Image
  cmap = colormaps["magma"]
  left = cmap(np.clip(np.asarray(pattern, np.float32), 0, 1))
  left[~np.asarray(valid, bool)] = (0.5, 0.5, 0.5, 1.0)
  right = cmap(np.clip(np.asarray(simulated, np.float32), 0, 1))
  img = (np.concatenate([left, right], axis=1)[..., :3] * 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="PNG")
  return buf.getvalue()


#: File formats of :func:`write_mesh` (trimesh's exporters).
MESH_FORMATS = ("obj", "stl", "ply")


def isosurface_mesh(density, geometry: Geometry,
                    level: float = 0.5):
  """The ``level`` isosurface of ``density [N, N, N]`` as a
  ``trimesh.Trimesh`` (vertices in nm, x y z, box centre at the origin,
  faces wound outwards). The volume is padded by one empty voxel, so the
  surface of a particle touching the box is closed too."""
  import trimesh
  surface = isosurface(density, geometry, level)
  if surface is None:
    raise ValueError(f"isosurface: the density never crosses {level}; "
                     "nothing to mesh.")
  verts, faces = surface
  mesh = trimesh.Trimesh(vertices=verts[:, ::-1], faces=faces, process=True)
  if mesh.is_watertight and mesh.volume < 0:
    mesh.invert()
  return mesh


def write_mesh(path, density, geometry: Geometry,
               level: float = 0.5) -> dict:
  """Write the isosurface of :func:`isosurface_mesh` to ``path`` (format
  from its suffix: ``.obj``, ``.stl`` or ``.ply``), atomically; returns
  what ``STEM.json`` records of it: file, faces, whether it is watertight,
  its enclosed volume (nm^3, watertight meshes only) and area (nm^2)."""
  fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
  if fmt not in MESH_FORMATS:
    raise ValueError(f"mesh file {path}: expected a suffix "
                     f"{', '.join('.' + f for f in MESH_FORMATS)}.")
  mesh = isosurface_mesh(density, geometry, level)
  data = mesh.export(file_type=fmt)
  with atomic_write(path, "wb") as f:
    f.write(data.encode() if isinstance(data, str) else data)
  watertight = bool(mesh.is_watertight)
  return {"file": os.path.basename(os.fspath(path)), "level": level,
          "faces": int(len(mesh.faces)), "watertight": watertight,
          "volume_nm3": float(mesh.volume) if watertight else None,
          "area_nm2": float(mesh.area)}


def write_result(out_dir, stem: str, *, density, pattern, valid, simulated,
                 metrics: dict, title: str = "", mesh: str | None = None,
                 geometry: Geometry, truth=None,
                 figure: bool = True) -> list[str]:
  """Write the output files of one input (``figure=False``: no PNG, for
  runs of thousands of patterns; ``mesh``: a format of
  :data:`MESH_FORMATS`, also ``STEM.FORMAT``, described in ``STEM.json``
  under ``"mesh"``); returns their paths."""
  if mesh and mesh not in MESH_FORMATS:
    raise ValueError(f"mesh format {mesh!r}: expected one of "
                     f"{', '.join(MESH_FORMATS)}.")
  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, stem)
  paths = [base + "_density.npy"]
  save_npy(paths[0], np.asarray(density, np.float32))
  if figure:
    paths.append(base + ".png")
    save_figure(reconstruction_figure(pattern, valid, density, simulated,
                                      geometry=geometry,
                                      title=title, truth=truth), paths[-1])
  paths.append(base + "_patterns.png")
  with atomic_write(paths[-1]) as f:
    f.write(pattern_thumbnail(pattern, valid, simulated))
  if mesh:
    paths.append(f"{base}.{mesh}")
    metrics = {**metrics, "mesh": write_mesh(paths[-1], density, geometry)}
  paths.append(base + ".json")
  # Last: its presence marks a finished input.
  records.write_result_json(paths[-1], metrics)
  return paths


def try_write_result(out_dir, stem: str, path, bad: list, **kwargs) -> bool:
  """:func:`write_result`; on a ``ValueError`` add ``(path, sentence)`` to
  ``bad`` and return False, so that a run goes on with its other inputs."""
  try:
    write_result(out_dir, stem, **kwargs)
  except ValueError as e:
    bad.append((path, f"{path}: {e}"))
    return False
  return True
