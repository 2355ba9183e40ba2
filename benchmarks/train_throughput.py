r"""Training throughput: steps/s and samples/s per config, data included.

  python -m benchmarks.train_throughput [--configs=test,cpu,paper]
      [--steps=5] [--paper_batch=2] [--json_out=FILE]

For each config: a fresh train state, the config's procedural training
pipeline (augmented) and the jit-compiled train step over all local devices;
one warm-up step (compilation, reported separately), then ``--steps`` timed
steps with the pipeline, and ``--steps`` steps on one batch already on the
device (``step_only_samples_per_s``: the step without the data). The paper config runs at batch ``--paper_batch`` on CPU (its batch 32
needs a GPU's memory); on a GPU pass ``--paper_batch=32``. The paper's own
figure: 50 epochs of 3 645 steps (batch 32) in 63 h on four RTX 2080 Ti, i.e.
0.80 steps/s or 25.7 samples/s.
"""

from __future__ import annotations

import importlib
import time

from absl import app
from absl import flags
import grain
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks.jsonlines import Report
from msftnet import Geometry
from msftnet import data
from msftnet import model as model_lib
from msftnet import train

_CONFIGS = flags.DEFINE_list("configs", ["test", "cpu", "paper"], "Configs.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per config.")
_PAPER_BATCH = flags.DEFINE_integer("paper_batch", 2,
                                    "Batch size for the paper config.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def main(argv):
  del argv
  report = Report()
  for name in _CONFIGS.value:
    config = importlib.import_module(f"msftnet.configs.{name}").get_config()
    if name == "paper":
      config.batch_size = _PAPER_BATCH.value
    mesh = train.make_mesh()
    geometry = Geometry()
    state = jax.device_put(train.create_train_state(config, jax.random.key(0)),
                           NamedSharding(mesh, P()))
    ds = data.procedural_dataset(train.data_config(config), "train",
                                 config.batch_size)
    it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0,
                                                   prefetch_buffer_size=0)))
    step = jax.jit(lambda s, b: train.train_step(s, b, config=config,
                                                 geometry=geometry),
                   donate_argnums=0)
    t = time.perf_counter()
    state, m = step(state, train.global_batch(next(it), mesh))
    jax.block_until_ready(m)
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(_STEPS.value):
      state, m = step(state, train.global_batch(next(it), mesh))
    jax.block_until_ready(m)
    sec = (time.perf_counter() - t) / _STEPS.value
    # The step alone: the same (device-resident) batch again and again.
    batch = train.global_batch(next(it), mesh)
    t = time.perf_counter()
    for _ in range(_STEPS.value):
      state, m = step(state, batch)
    jax.block_until_ready(m)
    step_sec = (time.perf_counter() - t) / _STEPS.value
    stats = jax.local_devices()[0].memory_stats() or {}
    rec = {"config": name, "width": config.width,
           "params": model_lib.count_params(model_lib.build(config.width))[
               "params"],
           "batch": config.batch_size, "steps_per_s": round(1 / sec, 4),
           "samples_per_s": round(config.batch_size / sec, 3),
           "step_only_samples_per_s": round(config.batch_size / step_sec, 3),
           "peak_device_bytes": stats.get("peak_bytes_in_use"),
           "first_step_s": round(first, 1), "timed_steps": _STEPS.value,
           "backend": jax.default_backend(), "devices": jax.device_count(),
           "loss": float(m["loss"])}
    report.add(rec)
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
