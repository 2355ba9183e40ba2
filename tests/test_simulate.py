"""The simulate launcher (the main job until the demo exists)."""

import pathlib
import subprocess
import sys

import numpy as np

from msftnet.solids import example_density
from msftnet import paper_io

ROOT = pathlib.Path(__file__).parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "paper" / "real" / "14" / "139907r.png"


def _run(*args):
  return subprocess.run([sys.executable, "-m", "experiments.simulate", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_example_density_is_a_solid_inside_the_box():
  obj = example_density(32)
  assert obj.shape == (32, 32, 32) and obj.min() == 0 and obj.max() == 1
  assert 0.02 < obj.mean() < 0.2
  assert obj[0].max() == 0 and obj[:, :, -1].max() == 0


def test_simulate_default_and_paper_volume(tmp_path):
  out = tmp_path / "p.png"
  res = _run(f"--out={out}", f"--intensity_out={tmp_path / 'i.npy'}")
  assert res.returncode == 0, res.stderr
  pat = paper_io.read_pattern(out)
  assert pat.shape == (128, 128) and pat.max() == 1 and pat.min() == 0
  inten = np.load(tmp_path / "i.npy")
  assert inten.argmax() == np.ravel_multi_index((64, 64), (128, 128))
  res = _run(f"--density={FIXTURE}", f"--out={tmp_path / 'q.png'}")
  assert res.returncode == 0, res.stderr
  assert "192^3 voxels" in res.stdout
  # Refraction: the propagation MSFT with silver's index, another pattern.
  res = _run(f"--out={tmp_path / 'r.png'}", "--forward_model=pmsft",
             "--material=0.11,0.079", f"--intensity_out={tmp_path / 'r.npy'}")
  assert res.returncode == 0, res.stderr
  refracted = np.load(tmp_path / "r.npy")
  assert refracted.argmax() == inten.argmax()
  assert np.abs(refracted - inten).max() > 0.05 * inten.max()


def test_simulate_bad_input_is_one_clear_line(tmp_path):
  bad = tmp_path / "bad.npy"
  np.save(bad, np.zeros((8, 8, 9), np.float32))
  res = _run(f"--density={bad}", f"--out={tmp_path / 'x.png'}")
  assert res.returncode == 1
  assert res.stderr.strip().splitlines()[-1] == (
      f"error: {bad}: expected a cubic [N, N, N] density, got shape (8, 8, 9).")
  assert not (tmp_path / "x.png").exists()
  res = _run("--material=silver", f"--out={tmp_path / 'y.png'}")
  assert res.returncode == 1
  assert res.stderr.strip().splitlines()[-1].startswith(
      "error: material 'silver': expected")
  assert not (tmp_path / "y.png").exists()
