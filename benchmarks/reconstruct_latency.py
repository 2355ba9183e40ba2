r"""Reconstruction latency and throughput: network alone vs with refinement.

  python -m benchmarks.reconstruct_latency [--model=DIR] [--batches=1,8]
      [--steps=150] [--repeats=3] [--json_out=FILE]

For each batch size: the network alone (the paper's reconstruction, the
baseline), the default refinement from the network's prediction
(``start="network"``, one start) and the multi-start refinement
(``start="auto"``: network + 4 spheres), all through ``msftnet.reconstruct.reconstruct`` on
random-noise patterns with a central-hole mask. Compilation is timed apart
(first call); the median of ``--repeats`` warm calls is reported as latency
per call and patterns/s.
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
from msftnet import pretrained
from msftnet import reconstruct as recon

_MODEL = flags.DEFINE_string("model", None, "Model directory (default bundled).")
_BATCHES = flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.")
_STEPS = flags.DEFINE_integer("steps", recon.RefineConfig.steps,
                              "Refinement steps.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Warm calls per setting.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  model = pretrained.load_model(_MODEL.value)
  report = Report()
  rng = np.random.default_rng(0)
  m = 128
  yy, xx = np.mgrid[:m, :m] - m // 2
  valid = (yy**2 + xx**2) >= 8**2
  base = recon.RefineConfig(steps=_STEPS.value, start="network")
  variants = [("network alone (baseline)", 0, base),
              ("refine, network start", _STEPS.value,
               dataclasses.replace(base, start="network")),
              ("refine, network + 4 sphere starts", _STEPS.value,
               dataclasses.replace(base, start="auto"))]
  for b in (int(x) for x in _BATCHES.value):
    pats = rng.uniform(size=(b, m, m)).astype(np.float32)
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
                  "starts": 1 if config.start == "network" or steps == 0
                  else 1 + len(config.sphere_radii),
                  "latency_s": round(sec, 4),
                  "patterns_per_s": round(b / sec, 3),
                  "first_call_s": round(first, 1),
                  "backend": jax.default_backend(),
                  "model_width": model.width})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
