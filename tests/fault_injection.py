"""Deliberate faults that the tests must catch (issue 26).

  python tests/fault_injection.py [NAME ...]

Each fault is put into a copy of the working tree (never into this one), the
tests named with it run there, and the line printed says which failed; a
fault whose tests all pass is a hole in the suite. Takes a few minutes.
"""

import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULTS = {
  "detector_x_y_swapped": ("msftnet/detector.py", "  return (detector.centre_px[0] + d * qy / kz / p,\n          detector.centre_px[1] + d * qx / kz / p)",
                       "  return (detector.centre_px[0] + d * qx / kz / p,\n          detector.centre_px[1] + d * qy / kz / p)",
                       ["tests/test_detector.py", "tests/test_measured.py"]),
  "mask_polarity_inverted": ("msftnet/measured.py", "    return (mask.astype(np.int64) & _CXI_BAD_MASK) == 0", "    return (mask.astype(np.int64) & _CXI_BAD_MASK) != 0",
                       ["tests/test_measured.py"]),
  "ranking_reversed": ("msftnet/refine/trust.py", "  return np.lexsort((loss, bad))", "  return np.lexsort((-loss, bad))",
                       ["tests/test_refine.py"]),
  "centre_shift_sign_flipped": ("msftnet/reconstruct.py", "centre.shift_pattern(p, v, s) for p, v, s in", "centre.shift_pattern(p, v, -s) for p, v, s in",
                       ["tests/test_reconstruct.py::test_reconstruct_returns_ranked_candidates_and_finds_the_centre"]),
  "refinement_returns_start": ("msftnet/refine/polytope.py", "        geometry=geometry, steps=config.steps, profile=profile)", "        geometry=geometry, steps=0 * config.steps, profile=profile)",
                       ["tests/test_refine.py::test_polytope_refinement_recovers_a_known_solid"]),
  "dark_level_ignored": ("msftnet/refine/measurement.py", "  return log_pattern(inten, eps=jnp.maximum(peak * 10.0**u, 1e-30))", "  return log_pattern(inten, eps=jnp.maximum(peak * 10.0**(0 * u - 3), 1e-30))",
                       ["tests/test_refine.py", "tests/test_fitting.py::test_fit_recovers_size_and_prefers_the_true_class"]),
}
names = sys.argv[1:] or list(FAULTS)
for name in names:
  path, a, b, tests = FAULTS[name]
  dst = os.path.join(tempfile.mkdtemp(), name)
  shutil.copytree(SRC, dst, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", ".ci-venv"))
  s = open(os.path.join(dst, path)).read()
  assert s.count(a) == 1, (name, s.count(a))
  open(os.path.join(dst, path), "w").write(s.replace(a, b))
  env = dict(os.environ, PYTHONPATH=dst)
  r = subprocess.run([sys.executable, "-m", "pytest", *tests, "-p", "no:cacheprovider", "-q", "-n", "2"], cwd=dst, env=env, capture_output=True, text=True)
  failed = [l for l in r.stdout.splitlines() if l.startswith("FAILED")]
  print(f"{name}: " + ("caught by " + "; ".join(failed) if failed else
                       "NOT CAUGHT: " + r.stdout.strip().splitlines()[-1]),
        flush=True)
  shutil.rmtree(os.path.dirname(dst), ignore_errors=True)
