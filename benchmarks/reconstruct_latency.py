r"""Reconstruction latency and throughput: network alone vs with refinement.

  python -m benchmarks.reconstruct_latency [--model=DIR] [--batches=1]
      [--repeats=2] [--json_out=FILE]

For each batch size: the network alone (the paper's reconstruction, the
baseline), the free-voxel refinement from the network's prediction
(``method="voxels"``, 150 steps, the previous default) and the default
polytope refinement (``method="polytope"``: centre search, sphere scan, 10
starts coarse, 2 fine), all through ``msftnet.reconstruct.reconstruct`` on
a simulated pattern of a truncated solid with a central-hole mask.
Compilation is timed apart (first call); the median of ``--repeats`` warm
calls is reported as latency per call and patterns/s.
"""

from __future__ import annotations

import dataclasses
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import data as data_lib
from msftnet import pretrained
from msftnet import reconstruct as recon

_MODEL = flags.DEFINE_string("model", None, "Model directory (default bundled).")
_BATCHES = flags.DEFINE_list("batches", ["1"], "Batch sizes.")
_VARIANTS = flags.DEFINE_list(
    "variants", ["network", "voxels", "polytope"],
    "Which of network / voxels / polytope to run at every batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Warm calls per setting.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  model = pretrained.load_model(_MODEL.value)
  report = Report()
  m = 128
  yy, xx = np.mgrid[:m, :m] - m // 2
  valid = (yy**2 + xx**2) >= 8**2
  cfg = data_lib.DataConfig(n_samples=64, seed=4321, test_set=True)
  sample = data_lib.simulate_batch(cfg, [data_lib.sample_params(cfg, 0)], [0])
  base = recon.RefineConfig()
  keys = ["network", "voxels", "polytope"]
  unknown = set(_VARIANTS.value) - set(keys)
  if unknown:
    raise app.UsageError(f"--variants: unknown {sorted(unknown)}; "
                         f"expected some of {keys}.")
  variants = [("network alone (baseline)", 0, base),
              ("voxels, network start", 150,
               dataclasses.replace(base, method="voxels", steps=150)),
              ("polytope (default)", base.steps, base)]
  variants = [v for k, v in zip(keys, variants) if k in _VARIANTS.value]
  for b in (int(x) for x in _BATCHES.value):
    pats = np.repeat(sample["pattern"], b, axis=0)
    vals = np.broadcast_to(valid, (b, m, m))
    for name, steps, config in variants:
      run = lambda: recon.reconstruct(pats, vals, model=model,
                                      refine_steps=steps, config=config)
      t = time.perf_counter()
      jax.block_until_ready(run().density)
      first = time.perf_counter() - t
      times = []
      for _ in range(_REPEATS.value):
        t = time.perf_counter()
        jax.block_until_ready(run().density)
        times.append(time.perf_counter() - t)
      sec = float(np.median(times))
      report.add({"variant": name, "batch": b, "refine_steps": steps,
                  "method": "network" if steps == 0 else config.method,
                  "latency_s": round(sec, 4),
                  "patterns_per_s": round(b / sec, 3),
                  "first_call_s": round(first, 1),
                  "backend": jax.default_backend(),
                  "model_width": model.width})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
