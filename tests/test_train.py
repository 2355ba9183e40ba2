"""Tests of training (msftnet.train, experiments.train)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from experiments.configs import test as test_config
from msftnet import train

ROOT = pathlib.Path(__file__).parent.parent


def _config(**changes):
  c = test_config.get_config()
  for k, v in changes.items():
    c[k] = v
  return c


def _train(workdir, **changes):
  return train.train_and_evaluate(_config(**changes), str(workdir))


def _params(state):
  return jax.tree_util.tree_leaves(jax.device_get(
      (state.params, state.batch_stats, state.opt_state)))


def _lines(path):
  return [json.loads(l) for l in open(path)]


def test_launcher_run_resume_and_non_finite_loss(tmp_path):
  # One compiled train step serves the three runs (the launcher's
  # subprocess fills the persistent compilation cache; the learning rate is
  # optimiser state, so the non-finite run's step is the same program).
  straight = tmp_path / "straight"
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=experiments/configs/test.py", f"--workdir={straight}"]
  res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "steps/s" in res.stderr and "ETA" in res.stderr
  assert "checkpoint_manager.py" not in res.stderr      # orbax INFO is quiet
  assert sorted(os.listdir(straight / "checkpoints")) == ["3", "6"]

  # Killed between checkpoints: the checkpoint of step 3 and a log that
  # runs past it. Resumed, it gives the same parameters, optimiser state and
  # logged losses as the straight run (the log is cut back to step 3).
  resumed = tmp_path / "resumed"
  shutil.copytree(straight / "checkpoints" / "3", resumed / "checkpoints" / "3")
  shutil.copy(straight / "metrics.jsonl", resumed / "metrics.jsonl")
  with open(resumed / "metrics.jsonl", "a") as f:
    f.write('{"step": 7, "split": "tr')              # torn by the kill
  state = _train(resumed)
  assert int(state.step) == 6
  reference = train.restore_state(straight / "checkpoints", _config())
  for a, b in zip(_params(reference), _params(state)):
    np.testing.assert_array_equal(a, b)
  lines = _lines(resumed / "metrics.jsonl")
  assert [l["step"] for l in lines if l["split"] == "train"] == [1, 2, 3, 4,
                                                                  5, 6]
  assert {l["split"] for l in lines} == {"train", "validation"}
  assert all("loss" in l for l in lines)
  straight_lines = _lines(straight / "metrics.jsonl")
  assert len(straight_lines) == len(lines)
  for a, b in zip(straight_lines, lines):
    assert a["step"] == b["step"] and a["loss"] == b["loss"]
  assert sorted(os.listdir(resumed / "checkpoints")) == ["3", "6"]

  # A non-finite state stops the run before it is saved, even between
  # logged steps; the last good checkpoint is intact.
  bad_dir = tmp_path / "non_finite"
  with pytest.raises(train.NonFiniteLossError, match="last good checkpoint"):
    _train(bad_dir, learning_rate=1e30, checkpoint_every=1, total_steps=4,
           log_every=100)
  steps = sorted(int(s) for s in os.listdir(bad_dir / "checkpoints"))
  assert steps and steps[-1] < 4
  restored = train.restore_state(bad_dir / "checkpoints", _config())
  leaves = jax.tree_util.tree_leaves(jax.device_get(restored.params))
  assert all(np.all(np.isfinite(x)) for x in leaves)

  # A batch the devices cannot share is refused in one line.
  res = subprocess.run(cmd + ["--config.batch_size=3"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "XLA_FLAGS":
                            "--xla_force_host_platform_device_count=2"})
  assert res.returncode == 1
  assert "must be divisible by the 2 devices" in res.stderr.splitlines()[-1]


TWO_DEVICES = textwrap.dedent("""
    import os
    # Two host devices; XLA's lowest optimisation level: the test compares
    # two programs that it compiles once each and runs three steps, so
    # compilation dominates (31 -> 20 s per train step on 2 cores).
    os.environ["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=2 "
                               "--xla_backend_optimization_level=0")
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from msftnet import Geometry, data, train
    from experiments.configs import test as test_config
    assert jax.device_count() == 2
    config = test_config.get_config()
    config.dropout_rate = 0.0
    # SGD: Adam's first steps are ~lr * sign(g) and amplify the reduction-
    # order noise of near-zero gradient components into visible differences.
    config.optimizer = "sgd"
    config.learning_rate = 0.2
    dc = train.data_config(config)
    params = [data.sample_params(dc, i) for i in range(4)]
    b = data.simulate_batch(dc, params, list(range(4)))
    batch = {k: b[k] for k in train.BATCH_KEYS}
    losses = {}
    for n in (1, 2):
      mesh = train.make_mesh(jax.devices()[:n])
      state = jax.device_put(train.create_train_state(config, jax.random.key(0)),
                             NamedSharding(mesh, P()))
      gb = {k: jax.device_put(v, NamedSharding(mesh, P("data")))
            for k, v in batch.items()}
      step = jax.jit(lambda s, x: train.train_step(s, x, config=config,
                                                   geometry=Geometry()))
      out = []
      for _ in range(3):
        state, m = step(state, gb)
        out.append(float(m["loss"]))
      losses[n] = out
    print(losses)
    assert int(state.step) == 3
    assert losses[1][-1] < losses[1][0]          # the steps lower the loss
    # Same forward pass; later steps differ only by float32 summation order
    # (amplified by batch norm over a few samples): measured <= 3e-4.
    np.testing.assert_allclose(losses[1][0], losses[2][0], rtol=1e-6)
    np.testing.assert_allclose(losses[1], losses[2], rtol=2e-3)
    print("SAME")
""")


def test_two_devices_give_the_same_losses_as_one():
  res = subprocess.run([sys.executable, "-c", TWO_DEVICES], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "SAME" in res.stdout
