"""Figures and result files (msftnet.report)."""

import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

from msftnet import report

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
                                     title="test")
  report.save_figure(fig, tmp_path / "f.png")
  with Image.open(tmp_path / "f.png") as im:
    assert im.size[0] > 1000 and im.size[1] > 300
  assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
