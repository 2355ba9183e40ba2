r"""Write a dataset in the paper's layout (infos*.csv, real/, scatter/).

  python -m experiments.make_dataset --out=DIR --n=1000 --seed=0 \
      [--resolution=192|64] [--test_set] [--workers=1] [--batch=8]

A thin launcher over :func:`msftnet.data.write_paper_dataset` (layout,
determinism and resumption are documented there): the same flags give
byte-identical files whatever ``--workers``; an interrupted run is resumed by
running the same command again. Rates: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import sys
import time

from absl import app
from absl import flags

from msftnet import data

_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_N = flags.DEFINE_integer("n", 1000, "Number of samples.")
_SEED = flags.DEFINE_integer("seed", 0, "Dataset seed.")
_RESOLUTION = flags.DEFINE_enum("resolution", "192", ["192", "64"],
                                "Voxels per axis of the written volumes.")
_TEST_SET = flags.DEFINE_bool("test_set", False,
                              "Truncated solids (cut, caxis columns).")
_WORKERS = flags.DEFINE_integer("workers", 1, "Worker processes.")
_BATCH = flags.DEFINE_integer("batch", 8, "Solids simulated per jit call.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  start = time.perf_counter()
  try:
    names = data.write_paper_dataset(
        _OUT.value, _N.value, seed=_SEED.value,
        resolution=int(_RESOLUTION.value), test_set=_TEST_SET.value,
        workers=_WORKERS.value, batch=_BATCH.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"wrote {_N.value} samples to {_OUT.value} ({', '.join(names)}) in "
        f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  app.run(main)
