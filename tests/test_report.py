"""Figures and result files (msftnet.report)."""

import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

from msftnet import Geometry
from msftnet import report

SMALL_REPORT = Geometry(n_voxels=16, detector_px=32)

ROOT = pathlib.Path(__file__).parent.parent


def test_importing_the_figure_code_leaves_the_backend_alone():
  code = ("import matplotlib; matplotlib.use('svg'); "
          "import msftnet.report; "
          "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
  res = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-2000:]


def test_reconstruction_figure_is_written_atomically(tmp_path):
  rng = np.random.default_rng(0)
  pattern = rng.uniform(size=(32, 32))
  valid = np.ones((32, 32), bool)
  valid[:4] = False
  vol = np.zeros((16, 16, 16), np.float32)
  vol[4:12, 5:11, 6:10] = 1.0
  fig = report.reconstruction_figure(pattern, valid, vol, pattern, truth=vol,
                                     title="test", geometry=SMALL_REPORT)
  report.save_figure(fig, tmp_path / "f.png")
  with Image.open(tmp_path / "f.png") as im:
    assert im.size[0] > 1000 and im.size[1] > 300
  assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_meshes_are_closed_scaled_and_written_in_three_formats(tmp_path):
  import json
  import pytest
  import trimesh
  g = Geometry(n_voxels=32, box_nm=160.0, detector_px=32)      # 5 nm voxels
  r = (np.arange(32) - 15.5) * g.voxel_nm
  z, y, x = np.meshgrid(r, r, r, indexing="ij")
  ball = ((x - 20.0) ** 2 + y ** 2 + z ** 2 < 40.0 ** 2).astype(np.float32)
  mesh = report.isosurface_mesh(ball, g)
  assert mesh.is_watertight and mesh.volume > 0
  # Volume and centre in nm: the ball of radius 40 nm at x = +20 nm.
  assert mesh.volume == pytest.approx(4 / 3 * np.pi * 40.0**3, rel=0.05)
  np.testing.assert_allclose(mesh.center_mass, [20.0, 0.0, 0.0], atol=1.0)
  # A particle touching the box is closed by the padding.
  edge = np.zeros_like(ball)
  edge[:, :, :5] = 1.0
  assert report.isosurface_mesh(edge, g).is_watertight
  for fmt in report.MESH_FORMATS:
    info = report.write_mesh(tmp_path / f"m.{fmt}", ball, g)
    back = trimesh.load(tmp_path / f"m.{fmt}", force="mesh")
    assert len(back.faces) == info["faces"] == len(mesh.faces)
    assert info["watertight"] and info["volume_nm3"] == pytest.approx(
        mesh.volume)
  with pytest.raises(ValueError, match=r"expected a suffix \.obj, \.stl, \.ply"):
    report.write_mesh(tmp_path / "m.vtk", ball, g)
  with pytest.raises(ValueError, match="nothing to mesh"):
    report.write_mesh(tmp_path / "empty.obj", np.zeros_like(ball), g)
  assert not (tmp_path / "empty.obj").exists()
  # write_result records the mesh in STEM.json, which is written last.
  paths = report.write_result(
      tmp_path / "out", "s", density=ball, pattern=np.zeros((32, 32)),
      valid=np.ones((32, 32), bool), simulated=np.zeros((32, 32)),
      metrics={"loss": 1.0}, mesh="stl", geometry=g, figure=False)
  assert [pathlib.Path(p).name for p in paths] == [
      "s_density.npy", "s_patterns.png", "s.stl", "s.json"]
  record = json.loads((tmp_path / "out" / "s.json").read_text())
  assert record["mesh"]["file"] == "s.stl" and record["mesh"]["watertight"]
