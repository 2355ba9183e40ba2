r"""A run of many patterns through the reconstruction launcher, end to end.

  python -m benchmarks.reconstruct_run [--n=1000] [--distinct=50]
      [--refine_n=10] [--batch=32] [--json_out=FILE]

``--distinct`` truncated test solids (``DataConfig(test_set=True)``, data
seed 4321) are simulated at 64^3, Poisson-sampled to photon counts (1e7 at
the brightest pixel) and tiled into one CXI run of ``--n`` frames (int32,
with a beam stop and a detector gap in its CXI mask): what a facility's run
looks like to ``python -m experiments.reconstruct``. Each case runs the
launcher in a fresh process (model loading and compilation included, as a
user sees it) and reports wall seconds and patterns/s:

* ``network``: ``--refine_steps=0 --nofigures --batch=B`` over all frames;
* ``network, rerun``: the same command again (every frame is skipped: the
  cost of resuming a finished run);
* ``polytope``: the default refinement over the first ``--refine_n`` frames
  (a separate run file), ``--nofigures``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import h5py
import jax
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import data as data_lib
import msftnet

_N = flags.DEFINE_integer("n", 1000, "Frames in the run.")
_DISTINCT = flags.DEFINE_integer("distinct", 50, "Distinct simulated solids.")
_REFINE_N = flags.DEFINE_integer("refine_n", 10, "Frames refined.")
_BATCH = flags.DEFINE_integer("batch", 32, "The launcher's --batch.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(path: str, counts: np.ndarray) -> None:
  """A CXI run ``[N, M, M]`` of counts with a beam stop and a gap masked."""
  m = counts.shape[-1]
  yy, xx = np.mgrid[:m, :m] - m // 2
  bad = ((yy**2 + xx**2) <= 6**2) | ((xx >= 20) & (xx < 24))
  with h5py.File(path, "w") as f:
    det = f.create_group("entry_1/instrument_1/detector_1")
    det["data"] = counts.astype(np.int32)
    det["mask"] = bad.astype(np.uint32)
    f["entry_1/data_1/data"] = h5py.SoftLink(
        "/entry_1/instrument_1/detector_1/data")


def _launch(args: list[str]) -> tuple[float, str]:
  t = time.perf_counter()
  res = subprocess.run([sys.executable, "-m", "experiments.reconstruct",
                        *args], cwd=ROOT, capture_output=True, text=True)
  sec = time.perf_counter() - t
  if res.returncode != 0:
    raise RuntimeError(res.stderr[-2000:])
  return sec, res.stdout


def main(argv):
  del argv
  report = Report()
  cfg = data_lib.DataConfig(n_samples=max(_DISTINCT.value, 1), seed=4321,
                            test_set=True)
  g = cfg.geometry
  rng = np.random.default_rng(0)
  frames = []
  for i in range(_DISTINCT.value):
    vol = data_lib.simulate_batch(cfg, [data_lib.sample_params(cfg, i)],
                                  [i])["density"]
    inten = np.asarray(msftnet.intensity(vol, g))[0]
    frames.append(rng.poisson(inten / inten.max() * 1e7))
  counts = np.stack([frames[i % len(frames)] for i in range(_N.value)])
  with tempfile.TemporaryDirectory() as tmp:
    run = os.path.join(tmp, "run.cxi")
    write_run(run, counts)
    small = os.path.join(tmp, "small.cxi")
    write_run(small, counts[:_REFINE_N.value])
    out = os.path.join(tmp, "out")
    cases = [("network", run, ["--refine_steps=0", f"--batch={_BATCH.value}"]),
             ("network, rerun", run,
              ["--refine_steps=0", f"--batch={_BATCH.value}"]),
             ("polytope", small, [f"--batch={_BATCH.value}"])]
    for name, path, extra in cases:
      dest = out + ("_refined" if name == "polytope" else "")
      sec, stdout = _launch([f"--out={dest}", "--nofigures", *extra, path])
      n = _REFINE_N.value if name == "polytope" else _N.value
      done = re.search(r"reconstructed (\d+) of", stdout)
      report.add({"case": name, "frames": n,
                  "reconstructed": int(done.group(1)) if done else None,
                  "wall_s": round(sec, 1),
                  "patterns_per_s": round(n / sec, 2),
                  "batch": _BATCH.value, "backend": jax.default_backend(),
                  "devices": jax.local_device_count()})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
