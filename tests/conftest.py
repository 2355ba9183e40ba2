"""Test session set-up: a persistent XLA compilation cache.

Training tests compile the same small train step several times (and in
subprocesses); caching compiled executables on disk for the session keeps
the suite inside CI's time budget. Results are unaffected.
"""

import os
import tempfile

_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), "msftnet-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
  """An untrained width-2 network saved as a model directory.

  Its variables are drawn directly in the shapes ``jax.eval_shape`` gives
  (LeCun-normal kernels, zero biases, unit batch statistics) instead of
  running ``init``: eager initialisation compiles every layer of the 64^3
  decoder op by op (90 s on 2 cores).
  """
  import jax.numpy as jnp
  import numpy as np
  from msftnet import model as model_lib
  from msftnet import pretrained
  net = model_lib.build(2)
  shapes = jax.eval_shape(lambda: net.init(
      {"params": jax.random.key(0)}, jnp.zeros((1, 128, 128, 1)),
      train=False))
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(
          np.float32)
    if "var" in name or "scale" in name:
      return np.ones(leaf.shape, np.float32)
    return np.zeros(leaf.shape, np.float32)

  variables = jax.tree_util.tree_map_with_path(draw, shapes)
  path = tmp_path_factory.mktemp("models") / "tiny"
  pretrained.save_model(path, variables, {"width": 2}, "# tiny test model\n")
  return str(path)


# Tests that compile a whole training step or start launcher subprocesses
# take minutes each; scheduled first, they overlap on the two xdist workers
# with the many short tests instead of forming a serial tail at the end.
_SLOW_FIRST = ("test_train.py", "launcher", "msftnet_command", "evaluate",
               "demo",
               "tiny_network", "two_devices", "fit_recovers", "gradients_are")


def pytest_collection_modifyitems(config, items):
  del config
  items.sort(key=lambda item: 0 if any(s in item.nodeid for s in _SLOW_FIRST)
             else 1)
