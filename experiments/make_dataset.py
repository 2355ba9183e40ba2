r"""Write a dataset in the paper's layout (infos*.csv, real/, scatter/).

  python -m experiments.make_dataset --out=DIR --n=1000 --seed=0 \
      [--resolution=192|64] [--test_set] [--workers=1] [--batch=16]

Sample ``nr`` (1-based) is solid ``msftnet.data.sample_params(seed, nr - 1)``;
its volume goes to ``real/K/NNNr.png`` (the paper's flattened PNG: 16-bit
grayscale, 12 x 16 tiles at 192^3, 8 x 8 at 64^3) and its normalised log
pattern (random dark offset, simulated from that volume) to
``scatter/K/NNNs.png`` (RGB, 8 bit), with ``K = (nr - 1) // 10000 + 1``
folders of 10 000 as the paper; ``infosK.csv`` lists them with the paper's
columns (``nr, real, scatter, polyhedron, symm, theta, phi, alpha, size,
stretch, axis``), plus ``cut, caxis`` for ``--test_set`` (truncated solids,
as the paper's test set) and our ``seed`` (regenerates potatoes).

The same flags give byte-identical files, whatever ``--workers``. Every file
is written atomically; an interrupted run is resumed by running the same
command again (finished samples are skipped; the CSVs are rewritten at the
end). Measured on 2 CPU cores (20 and 16 samples, start-up included): about
5 samples/s at 64^3, 2.5 samples/s at 192^3.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import sys
import time

from absl import app
from absl import flags

_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_N = flags.DEFINE_integer("n", 1000, "Number of samples.")
_SEED = flags.DEFINE_integer("seed", 0, "Dataset seed.")
_RESOLUTION = flags.DEFINE_enum("resolution", "192", ["192", "64"],
                                "Voxels per axis of the written volumes.")
_TEST_SET = flags.DEFINE_bool("test_set", False,
                              "Truncated solids (cut, caxis columns).")
_WORKERS = flags.DEFINE_integer("workers", 1, "Worker processes.")
_BATCH = flags.DEFINE_integer("batch", 8, "Solids simulated per jit call.")

PER_FOLDER = 10_000
COLUMNS = ["nr", "real", "scatter", "polyhedron", "symm", "theta", "phi",
           "alpha", "size", "stretch", "axis"]


def _paths(nr: int) -> tuple[str, str]:
  folder = (nr - 1) // PER_FOLDER + 1
  return f"./real/{folder}/{nr}r.png", f"./scatter/{folder}/{nr}s.png"


def _config(resolution: int, seed: int, n: int, test_set: bool):
  from msftnet import data
  return data.DataConfig(n_samples=n, seed=seed, resolution=resolution,
                         target_voxels=resolution, test_set=test_set)


def _work(args) -> int:
  """Write samples ``nrs`` (a worker's share); returns how many were new."""
  out, nrs, resolution, seed, n, test_set, batch = args
  from msftnet import data
  from msftnet import paper_io
  config = _config(resolution, seed, n, test_set)
  todo = [nr for nr in nrs if not all(
      os.path.exists(os.path.join(out, p)) for p in _paths(nr))]
  for start in range(0, len(todo), batch):
    chunk = todo[start:start + batch]
    # Pad to the fixed batch size (one compilation); padding is dropped.
    padded = chunk + [chunk[-1]] * (batch - len(chunk))
    params = [data.sample_params(config, nr - 1) for nr in padded]
    sims = data.simulate_batch(config, params, [nr - 1 for nr in padded])
    for j, nr in enumerate(chunk):
      real, scatter = _paths(nr)
      paper_io.write_density(os.path.join(out, real), sims["density"][j])
      paper_io.write_pattern(os.path.join(out, scatter), sims["target"][j])
  return len(todo)


def write_csvs(out: str, n: int, seed: int, resolution: int,
               test_set: bool) -> list[str]:
  """(Re)write infosK.csv for all samples; returns the file names."""
  from msftnet import data
  from msftnet import paper_io
  config = _config(resolution, seed, n, test_set)
  columns = COLUMNS + (["cut", "caxis"] if test_set else []) + ["seed"]
  names = []
  for folder in range(1, (n - 1) // PER_FOLDER + 2):
    lo, hi = (folder - 1) * PER_FOLDER + 1, min(folder * PER_FOLDER, n)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for nr in range(lo, hi + 1):
      row = data.sample_params(config, nr - 1).to_row()
      real, scatter = _paths(nr)
      writer.writerow({"nr": nr, "real": real, "scatter": scatter, **row})
    name = f"infos{folder}.csv"
    with paper_io.atomic_write(os.path.join(out, name), "w") as f:
      f.write(buf.getvalue())
    names.append(name)
  return names


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  n, out = _N.value, _OUT.value
  if n < 1 or _WORKERS.value < 1 or _BATCH.value < 1:
    print("error: --n, --workers and --batch must be >= 1.", file=sys.stderr)
    sys.exit(1)
  resolution = int(_RESOLUTION.value)
  if os.path.exists(out) and not os.path.isdir(out):
    print(f"error: --out={out} is a file, expected a folder.", file=sys.stderr)
    sys.exit(1)
  os.makedirs(out, exist_ok=True)
  workers = _WORKERS.value
  # Contiguous blocks of `batch` samples, dealt round-robin to the workers.
  blocks = [list(range(s, min(s + _BATCH.value, n + 1)))
            for s in range(1, n + 1, _BATCH.value)]
  jobs = [(out, nrs, resolution, _SEED.value, n, _TEST_SET.value, _BATCH.value)
          for nrs in blocks]
  start, done = time.perf_counter(), 0
  pool = (multiprocessing.get_context("spawn").Pool(workers)
          if workers > 1 else None)
  results = pool.imap(_work, jobs) if pool else map(_work, jobs)
  try:
    for i, new in enumerate(results):
      done += len(jobs[i][1])
      elapsed = time.perf_counter() - start
      rate = done / elapsed
      if (i + 1) % max(1, len(jobs) // 20) == 0 or i + 1 == len(jobs):
        print(f"[{done}/{n}] {rate:.1f} samples/s, ETA "
              f"{(n - done) / max(rate, 1e-9):.0f} s "
              f"({new} new in the last block)", flush=True)
  finally:
    if pool:
      pool.close()
      pool.join()
  names = write_csvs(out, n, _SEED.value, resolution, _TEST_SET.value)
  print(f"wrote {n} samples to {out} ({', '.join(names)}) in "
        f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  app.run(main)
