"""Output files of a reconstruction or fit: volume, metrics, figure, mesh.

``write_result(out_dir, stem, ...)`` writes, each atomically (temporary file
renamed, so an interrupted run leaves no half-written file):

* ``STEM_density.npy``: float32 ``[64, 64, 64]``, (z, y, x), beam +z, the
  318.75 nm box;
* ``STEM.json``: the metrics dict given;
* ``STEM.png``: :func:`reconstruction_figure`;
* ``STEM.obj`` (``mesh=True``): the 0.5 isosurface (scikit-image marching
  cubes) in nm, box centre at the origin, vertices as (x, y, z).
"""

from __future__ import annotations

import io
import json
import os

from matplotlib.figure import Figure
import numpy as np

from msftnet.geometry import Geometry
from msftnet.paper_io import atomic_write
from msftnet.paper_io import save_npy

__all__ = ["reconstruction_figure", "write_result", "write_json",
           "isosurface_obj", "save_figure", "check_out_dir",
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


def write_json(path, record: dict) -> None:
  with atomic_write(path, "w") as f:
    json.dump(record, f, indent=2, default=float)
    f.write("\n")


def _extent(geometry: Geometry):
  half = geometry.box_nm / 2
  return (-half, half, -half, half)


def reconstruction_figure(pattern, valid, density, simulated, *,
                          geometry: Geometry | None = None, title: str = "",
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
  g = Geometry() if geometry is None else geometry
  rows = 1 if truth is None else 2
  fig = Figure(figsize=(18, 3.3 * rows))
  axes = fig.subplots(rows, 6, squeeze=False)
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
    for a in ax:
      a.tick_params(labelsize=7)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return fig


def isosurface_obj(density, geometry: Geometry | None = None,
                   level: float = 0.5) -> str:
  """Wavefront OBJ text of the ``level`` isosurface (nm, centred, x y z)."""
  from skimage import measure
  g = Geometry() if geometry is None else geometry
  vol = np.pad(np.asarray(density, np.float32), 1)
  if vol.max() <= level or vol.min() >= level:
    raise ValueError(f"isosurface: the density never crosses {level}; "
                     "nothing to mesh.")
  verts, faces, _, _ = measure.marching_cubes(vol, level=level)
  verts = (verts - 1 - (g.n_voxels - 1) / 2) * g.voxel_nm     # (z, y, x) nm
  lines = ["# msftnet isosurface at %.2f, nm, box centre at origin" % level]
  lines += ["v %.3f %.3f %.3f" % (v[2], v[1], v[0]) for v in verts]
  lines += ["f %d %d %d" % tuple(f + 1) for f in faces]
  return "\n".join(lines) + "\n"


def write_result(out_dir, stem: str, *, density, pattern, valid, simulated,
                 metrics: dict, title: str = "", mesh: bool = False,
                 truth=None, figure: bool = True) -> list[str]:
  """Write the output files of one input (``figure=False``: no PNG, for
  runs of thousands of patterns); returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, stem)
  paths = [base + "_density.npy"]
  save_npy(paths[0], np.asarray(density, np.float32))
  if figure:
    paths.append(base + ".png")
    save_figure(reconstruction_figure(pattern, valid, density, simulated,
                                      title=title, truth=truth), paths[-1])
  if mesh:
    paths.append(base + ".obj")
    with atomic_write(paths[-1], "w") as f:
      f.write(isosurface_obj(density))
  paths.append(base + ".json")
  write_json(paths[-1], metrics)      # last: its presence marks a finished input
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
