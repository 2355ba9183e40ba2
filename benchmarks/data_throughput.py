r"""On-the-fly training data: samples/s of the procedural grain pipeline.

  python -m benchmarks.data_throughput [--batch=16] [--batches=8]
      [--json_out=FILE]

Times the training pipeline (``msftnet.data.procedural_dataset``: sample
solids -> rasterise -> MSFT -> log pattern with dark offset -> random
detector filter) at 64^3 and at 192^3 -> 64^3 (the paper's way: pattern from
the 192^3 volume, 64^3 target by block mean), after one warm-up batch
(compilation) and without prefetch threads (the compute rate), with and
without the augmentation, one JSON line each.
Baseline in the same run: the same samples with the rasteriser evaluated one
solid at a time (no batching). Target: >= 30 samples/s at 64^3 on 2 CPU cores.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import grain
import jax
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import data
from msftnet import raster
from msftnet import simulate_pattern
from msftnet import solids

_BATCH = flags.DEFINE_integer("batch", 16, "Batch size.")
_BATCHES = flags.DEFINE_integer("batches", 8, "Timed batches per case.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def _time_pipeline(config, augmented, batch, batches):
  ds = data.procedural_dataset(config, "train", batch, augmented=augmented)
  # No prefetch threads: measure the compute rate, not work done ahead
  # during the first batch's compilation.
  it = iter(ds.to_iter_dataset(
      grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
  t = time.perf_counter()
  next(it)
  first = time.perf_counter() - t
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  return first, batch * batches / (time.perf_counter() - t)


def _time_unbatched(config, n):
  g = config.simulation_geometry
  sim = jax.jit(lambda v: simulate_pattern(v, g))
  params = [data.sample_params(config, i) for i in range(n + 1)]
  def one(p):
    vol = raster.rasterize(*solids.half_spaces(p), config.resolution)
    return np.asarray(sim(vol))
  one(params[0])
  t = time.perf_counter()
  for p in params[1:]:
    one(p)
  return n / (time.perf_counter() - t)


def main(argv):
  del argv
  report = Report()
  b, nb = _BATCH.value, _BATCHES.value
  for resolution in (64, 192):
    config = data.DataConfig(n_samples=60_000, seed=0, resolution=resolution)
    for augmented in (True, False):
      first, rate = _time_pipeline(config, augmented, b, nb)
      rec = {"pipeline": "procedural_grain", "resolution": resolution,
             "target_voxels": 64, "augmented": augmented, "batch": b,
             "samples_per_s": round(rate, 2),
             "first_batch_s": round(first, 2), "timed_samples": b * nb}
      report.add(rec)
    rate = _time_unbatched(config, 16 if resolution == 64 else 4)
    rec = {"pipeline": "unbatched_baseline", "resolution": resolution,
           "augmented": False, "batch": 1, "samples_per_s": round(rate, 2)}
    report.add(rec)
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
