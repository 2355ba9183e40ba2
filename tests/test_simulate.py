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


def test_simulate_bad_input_is_one_clear_line(tmp_path):
  bad = tmp_path / "bad.npy"
  np.save(bad, np.zeros((8, 8, 9), np.float32))
  res = _run(f"--density={bad}", f"--out={tmp_path / 'x.png'}")
  assert res.returncode == 1
  assert res.stderr.strip().splitlines()[-1] == (
      f"error: {bad}: expected a cubic [N, N, N] density, got shape (8, 8, 9).")
  assert not (tmp_path / "x.png").exists()


def test_simulate_with_refraction_and_a_bad_material(tmp_path):
  # Three runs of the launcher in one Python process (one JAX start-up):
  # the paper's MSFT, pmsft with a material, and a bad material.
  vol = np.zeros((16, 16, 16), np.float32)
  vol[4:12, 5:11, 6:10] = 1.0
  np.save(tmp_path / "v.npy", vol)
  script = f"""
import sys
from absl import flags
from msftnet.launch import simulate
def run(*args):
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["simulate", "--density={tmp_path / 'v.npy'}",
               "--detector_px=32", *args])
  simulate.main(["simulate"])
run("--out={tmp_path / 'a.png'}", "--intensity_out={tmp_path / 'a.npy'}")
run("--out={tmp_path / 'b.png'}", "--intensity_out={tmp_path / 'b.npy'}",
    "--forward_model=pmsft", "--material=0.11,0.079")
run("--material=silver", "--out={tmp_path / 'c.png'}")
"""
  res = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 1
  assert res.stderr.strip().splitlines()[-1].startswith(
      "error: material 'silver': expected")
  assert not (tmp_path / "c.png").exists()
  plain, refracted = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
  assert refracted.argmax() == plain.argmax()
  assert np.abs(refracted - plain).max() > 0.05 * plain.max()
