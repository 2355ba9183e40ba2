r"""Memory over a long run: a 10 000-frame virtual CXI run against a 10-frame one.

  python -m benchmarks.run_memory [--frames=10000] [--per_file=500]
      [--json_out=FILE]

Writes, in a temporary folder, ``--frames`` Poisson frames (uint16 counts,
128 x 128, bitshuffle-LZ4 compressed) in source files of ``--per_file``
frames each, and one CXI file whose ``entry_1/data_1/data`` is a virtual
dataset over all of them (as European XFEL's ``extra-data-make-virtual-cxi``
writes a run); the same for a 10-frame run. Each measurement runs in a fresh
process and reports its peak resident memory (``ru_maxrss``):

* ``stream``: every frame read through ``msftnet.measured.read_frames`` (the
  reader of ``msftnet reconstruct``), one at a time;
* ``reconstruct``: ``msftnet reconstruct --refine_steps=0 --frames=-10:``
  (the network on the run's last ten frames; the whole launcher).

The bar (#29): the long run's peak within 1.2x of the short run's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from benchmarks.jsonlines import Report

_FRAMES = flags.DEFINE_integer("frames", 10_000, "Frames of the long run.")
_PER_FILE = flags.DEFINE_integer("per_file", 500, "Frames per source file.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def write_run(folder: str, n: int, per_file: int) -> str:
  """A virtual CXI run of ``n`` frames over source files; returns its path."""
  import h5py
  import hdf5plugin
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  r = np.hypot(*np.mgrid[-64:64, -64:64])
  base = 1e4 * np.exp(-r / 8.0) * (1.5 + np.cos(r / 2.5))
  layout = h5py.VirtualLayout(shape=(n, 128, 128), dtype=np.uint16)
  for i, lo in enumerate(range(0, n, per_file)):
    hi = min(n, lo + per_file)
    name = f"source{i:04d}.h5"
    with h5py.File(os.path.join(folder, name), "w") as f:
      f.create_dataset("data", data=rng.poisson(base, (hi - lo, 128, 128)
                                                ).astype(np.uint16),
                       chunks=(1, 128, 128),
                       **hdf5plugin.Bitshuffle(cname="lz4"))
    layout[lo:hi] = h5py.VirtualSource(name, "data", shape=(hi - lo, 128, 128))
  path = os.path.join(folder, "run.cxi")
  with h5py.File(path, "w") as f:
    f.create_virtual_dataset("entry_1/data_1/data", layout, fillvalue=0)
  return path


_STREAM = """
import resource, sys, time
from msftnet import measured
t = time.perf_counter()
refs, bad = measured.frame_refs([sys.argv[1]])
n = sum(1 for item in measured.read_frames(refs) if not isinstance(item, tuple))
print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main(argv):
  del argv
  report = Report()
  with tempfile.TemporaryDirectory() as tmp:
    runs = {}
    for n in (10, _FRAMES.value):
      t = time.perf_counter()
      runs[n] = write_run(os.path.join(tmp, f"run{n}"), n, _PER_FILE.value)
      print(f"wrote a {n}-frame virtual run in {time.perf_counter() - t:.1f} s",
            file=sys.stderr)
    for mode in ("stream", "reconstruct"):
      peaks = {}
      for n, path in runs.items():
        # One child per measurement: RUSAGE_CHILDREN is the largest child.
        code = (_STREAM if mode == "stream" else
                "import sys; from msftnet import cli; sys.exit(cli.main())")
        args = ([path] if mode == "stream" else
                ["reconstruct", f"--out={tmp}/out{n}",
                 "--refine_steps=0", "--frames=-10:", "--nofigures", path])
        probe = (f"import resource, subprocess, sys; subprocess.run("
                 f"[sys.executable, '-c', {code!r}, *{args!r}], check=True, "
                 "stdout=sys.stderr); print(resource.getrusage("
                 "resource.RUSAGE_CHILDREN).ru_maxrss)")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                             text=True, check=True)
        peaks[n] = int(out.stdout.strip().splitlines()[-1]) / 1024
        report.add({"mode": mode, "frames": n, "peak_mib": round(peaks[n], 1),
                    "seconds": round(time.perf_counter() - t, 1)})
      short, long = peaks[10], peaks[_FRAMES.value]
      report.add({"mode": mode, "summary": True,
                  "ratio_long_over_short": round(long / short, 3),
                  "bar_1_2": bool(long <= 1.2 * short)})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
