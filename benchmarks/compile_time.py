r"""Compile times of training: initialisation and the train step, side by side.

  python -m benchmarks.compile_time [--config=test] [--json_out=FILE]

Each variant runs in a fresh process with the persistent compilation cache
off, so every number is a cold compile on this machine:

* ``init_eager``: ``model.init`` run op by op (what flax does unjitted);
* ``init_jit``: ``jax.jit(model.init)`` at XLA's default optimisation level;
* ``init_jit_o0``: the same at level 0 (``msftnet.train.create_train_state``);
* ``step_flax_dropout``: the train step with ``flax.linen.Dropout``;
* ``step``: the train step with ``msftnet.model.Dropout`` (masks drawn over
  the flattened activations; the same masks).

Seconds of compilation (and for eager init its whole run), one JSON line per
variant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app
from absl import flags

from benchmarks.jsonlines import Report

_CONFIG = flags.DEFINE_string("config", "test", "experiments/configs/NAME.py")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")

_CHILD = r"""
import json, sys, time
import flax.linen as nn
import jax, jax.numpy as jnp
import importlib
from msftnet import Geometry, model as model_lib, train
variant, name = sys.argv[1], sys.argv[2]
config = importlib.import_module(f"msftnet.configs.{name}").get_config()
net = train.make_model(config)
key = jax.random.key(0)
init = lambda k: net.init({"params": k}, jnp.zeros((1, 128, 128, 1)),
                          train=False)
if variant.startswith("init"):
  t = time.perf_counter()
  if variant == "init_eager":
    jax.block_until_ready(init(key))
  else:
    opts = {"xla_backend_optimization_level": 0} if variant.endswith("o0") \
        else None
    jax.jit(init).lower(key).compile(opts)
  print(json.dumps({"seconds": time.perf_counter() - t}))
  sys.exit()
if variant == "step_flax_dropout":
  model_lib.Dropout = lambda rate: (lambda x, deterministic: nn.Dropout(
      rate, deterministic=deterministic)(x))
  net = train.make_model(config)
state = jax.eval_shape(lambda k: train.create_train_state(config, k), key)
state = state.replace(apply_fn=net.apply)
m = Geometry().detector_px
n = Geometry().n_voxels
b = config.batch_size
batch = {"pattern": jax.ShapeDtypeStruct((b, m, m), jnp.float32),
         "valid": jax.ShapeDtypeStruct((b, m, m), bool),
         "density": jax.ShapeDtypeStruct((b, n, n, n), jnp.float32),
         "loss_target": jax.ShapeDtypeStruct((b, m, m), jnp.float32)}
lowered = jax.jit(lambda s, x: train.train_step(
    s, x, config=config, geometry=Geometry())).lower(state, batch)
t = time.perf_counter()
lowered.compile()
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

VARIANTS = ("init_eager", "init_jit", "init_jit_o0", "step_flax_dropout",
            "step")


def main(argv):
  del argv
  report = Report()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
  for variant in VARIANTS:
    res = subprocess.run([sys.executable, "-c", _CHILD, variant, _CONFIG.value],
                         cwd=root, env=env, capture_output=True, text=True,
                         check=False)
    if res.returncode:
      raise SystemExit(f"{variant} failed: {res.stderr[-2000:]}")
    seconds = json.loads(res.stdout.strip().splitlines()[-1])["seconds"]
    report.add({"benchmark": "compile_time", "config": _CONFIG.value,
                "variant": variant, "seconds": round(seconds, 2)})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
