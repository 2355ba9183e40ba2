"""The benchmark baselines compute the same model as msftnet.msft."""

import jax.numpy as jnp
import numpy as np

from benchmarks.msft_throughput import naive_einsum_intensity
from benchmarks.msft_throughput import numpy_fft_intensity
from msftnet import Geometry
from msftnet import intensity
from msftnet.metrics import pearson_r


def test_baselines_agree_with_the_kernel():
  g = Geometry()
  rho = np.zeros((1, 64, 64, 64), np.float32)
  rho[0, 20:40, 25:45, 15:50] = 1.0
  ours = np.asarray(intensity(rho, g))
  naive = np.asarray(naive_einsum_intensity(jnp.asarray(rho), g))
  assert np.abs(naive - ours).max() < 1e-5 * ours.max()
  # The FFT baseline lives on the nearest FFT grid (2 pi / 846.6 nm^-1).
  fft = numpy_fft_intensity(rho, g)
  assert pearson_r(np.log(fft + 100), np.log(ours + 100)) > 0.99



_TRUST_CHECK = """
import numpy as np
from benchmarks import trust as bench
pats = bench.noparticle_patterns(64, seed=5)
again = bench.noparticle_patterns(64, seed=5)
assert len(pats) == 8 and len({n for n, _, _ in pats}) == 8
for (name, p, v), (_, p2, _) in zip(pats, again):
  assert p.shape == v.shape == (64, 64) and p.dtype == np.float32, name
  assert 0.0 <= p.min() and p.max() <= 1.0 and (p[~v] == 0).all(), name
  np.testing.assert_array_equal(p, p2)
rng = np.random.default_rng(0)
x = rng.normal(size=(4000, 2))
w_true = np.array([0.5, 2.0, -1.0])
y = rng.random(4000) < 1 / (1 + np.exp(-(w_true[0] + x @ w_true[1:])))
w = bench.fit_logistic(x, y.astype(float), l2=1e-3)
np.testing.assert_allclose(w, w_true, atol=0.2)
print("ok")
"""


def test_trust_inputs_and_the_confidence_fit():
  """The trust benchmark's no-particle patterns are valid model inputs (in
  [0, 1], 0 off the mask, seeded) with nothing to find; its logistic fit
  recovers known weights. (A subprocess: benchmark modules define absl
  flags of the same names.)"""
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  res = subprocess.run([sys.executable, "-c", _TRUST_CHECK], cwd=root,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


def test_depth_ratio_benchmark_reports_the_generators_spread(tmp_path):
  """The command behind ``refine.polytope.DEPTH_LIMIT`` runs and reports a
  spread about an isotropic median (the generator's axes are random)."""
  import json
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / "depth.jsonl"
  res = subprocess.run([sys.executable, "-m", "benchmarks.depth_ratio",
                        "--n=24", f"--json_out={out}"], cwd=root,
                       capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-2000:]
  row = json.loads(out.read_text().splitlines()[0])
  assert row["solids"] >= 20 and abs(row["q0.5"]) < 0.4
  assert row["q0.01"] < row["q0.5"] < row["q0.99"] <= row["max"]


def test_trust_rows_reads_stored_rows_again(tmp_path):
  """``benchmarks.trust_rows`` pools a set's aligned IoU and says which
  flags each rule decides, from stored rows alone; no rows is one error."""
  import json
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sig = {"fringe_radius_box": 0.2, "fringe_correlation": 0.8,
         "equivalent_radius_box": 0.2, "size_log_ratio": 0.0,
         "unexplained_fraction": 0.03, "noise_fraction": 0.02,
         "dark_level_log10": -4.0, "touches_box": False, "empty": False,
         "network_loss_ratio": 0.3, "valid_fraction": 0.9,
         "candidate_agreement": 0.9, "depth_log_ratio": 0.2}
  rows = [{"set": "simexp", "name": "good", "aligned_iou": 0.8,
           "signals": sig},
          {"set": "simexp", "name": "deep", "aligned_iou": 0.3,
           "signals": dict(sig, depth_log_ratio=1.5)},
          {"set": "cxi", "name": "residual", "aligned_iou": 0.2,
           "signals": dict(sig, unexplained_fraction=0.2,
                           noise_fraction=0.05)}]
  path = tmp_path / "rows.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))

  def run(*args):
    res = subprocess.run([sys.executable, "-m", "benchmarks.trust_rows",
                          *args], cwd=root, capture_output=True, text=True,
                         timeout=300)
    return res, [json.loads(l) for l in res.stdout.splitlines()
                 if l.startswith("{")]

  _, out = run("--what=pooled", "--set=simexp", str(path))
  assert out[0]["n"] == 2 and out[0]["median"] == 0.55
  _, out = run("--what=rules", str(path))
  assert out[0]["every_rule"]["wrong_flagged"] == "2 of 2"
  assert out[0]["without_deep_body"]["decided"] == [["simexp", "deep", 0.3]]
  assert out[0]["without_large_residual"]["decided"] == [
      ["cxi", "residual", 0.2]]
  res, _ = run("--what=rules", str(tmp_path / "none.jsonl"))
  assert res.returncode != 0 and "No rows with a truth" in res.stderr
  # --what=bodies: what the two-body retry tried and kept, against the
  # same inputs without it.
  two = [dict(rows[0]),
         dict(rows[1], aligned_iou=0.6, signals=dict(
             sig, unexplained_fraction=0.05, bodies=2,
             one_body_unexplained=0.1)),
         dict(rows[2], signals=dict(rows[2]["signals"],
                                    two_body_unexplained=0.19))]
  path2 = tmp_path / "two.jsonl"
  path2.write_text("".join(json.dumps(r) + "\n" for r in two))
  _, out = run("--what=bodies", f"--baseline={path}", str(path2))
  simexp, cxi = out
  assert (simexp["tried"], simexp["two_bodies_kept"]) == (1, 1)
  assert simexp["ratios_tried"] == [0.5]
  assert simexp["over_noise_kept"] == [5.0]
  assert simexp["over_noise_not_kept"] == []
  assert simexp["changed"] == [["deep", 0.3, 0.6]]
  assert simexp["median"] == 0.7 and simexp["baseline_median"] == 0.55
  assert (cxi["tried"], cxi["two_bodies_kept"]) == (1, 0)
  assert cxi["ratios_tried"] == [0.95] and cxi["changed"] == []
  assert cxi["over_noise_not_kept"] == [4.0]
