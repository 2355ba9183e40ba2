"""Tests of training (msftnet.train, experiments.train)."""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from msftnet.configs import test as test_config
from msftnet import train

ROOT = pathlib.Path(__file__).parent.parent


# The test config on a small grid (16^3 densities from 32 px patterns: two
# encoder blocks and two decoder stages fewer than the paper's, 64x fewer
# voxels): the same machinery, far less compilation and faster steps on 2
# cores (the physics is tested elsewhere on the paper's grid).
SMALL_GRID = {"resolution": 16, "target_voxels": 16, "detector_px": 32}


def _config(**changes):
  c = test_config.get_config()
  for k, v in {**SMALL_GRID, **changes}.items():
    c[k] = v
  return c


def _train(workdir, **changes):
  return train.train_and_evaluate(_config(**changes), str(workdir))


def _params(state):
  return jax.tree_util.tree_leaves(jax.device_get(
      (state.params, state.batch_stats, state.opt_state)))


def _lines(path):
  return [json.loads(l) for l in open(path)]


def _start(cmd, logdir, processes=1):
  """Start ``cmd`` (``processes > 1``: as one jax.distributed job on
  loopback); output to files in ``logdir`` (no pipe to fill)."""
  extra = [[] for _ in range(processes)]
  if processes > 1:
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    extra = [[f"--coordinator_address=127.0.0.1:{port}",
              f"--num_processes={processes}", f"--process_id={k}"]
             for k in range(processes)]
  os.makedirs(logdir, exist_ok=True)
  logs = [open(logdir / f"process{k}.log", "w+") for k in range(processes)]
  procs = [subprocess.Popen(cmd + extra[k], cwd=ROOT, stdout=logs[k],
                            stderr=subprocess.STDOUT, text=True)
           for k in range(processes)]
  return procs, logs


def _finish(job, timeout=600):
  """Wait for a job started by :func:`_start`; every process must succeed
  (one failing stops the others rather than leaving them waiting)."""
  procs, logs = job
  deadline = time.monotonic() + timeout
  while any(p.poll() is None for p in procs):
    if (any(p.poll() not in (None, 0) for p in procs)
        or time.monotonic() > deadline):
      for p in procs:
        p.kill()
      break
    time.sleep(0.5)
  for k, (p, log) in enumerate(zip(procs, logs)):
    p.wait()
    log.seek(0)
    text = log.read()
    log.close()
    assert p.returncode == 0, f"process {k}: {text[-3000:]}"


def _losses(workdir, last_step=None):
  return {(l["step"], l["split"]): l["loss"]
          for l in _lines(workdir / "metrics.jsonl")
          if last_step is None or l["step"] <= last_step}


@pytest.mark.launcher
def test_launcher_resume_data_parallel_and_non_finite_loss(tmp_path):
  # One compiled train step serves the three runs (the launcher's
  # subprocess fills the persistent compilation cache; the learning rate is
  # optimiser state, so the non-finite run's step is the same program).
  straight = tmp_path / "straight"
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=experiments/configs/test.py", f"--workdir={straight}",
         *(f"--config.{k}={v}" for k, v in SMALL_GRID.items())]
  res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "steps/s" in res.stderr and "ETA" in res.stderr
  assert "checkpoint_manager.py" not in res.stderr      # orbax INFO is quiet
  assert sorted(os.listdir(straight / "checkpoints")) == ["3", "6"]
  # The work directory records the geometry (grid and physics) it trains
  # on (msftnet.pretrained.Predictor.geometry reads it: test_reconstruct).
  from msftnet import Geometry
  from msftnet import pretrained
  n, m = SMALL_GRID["target_voxels"], SMALL_GRID["detector_px"]
  small = Geometry(n_voxels=n, detector_px=m)
  assert Geometry.from_dict(json.loads((straight / "config.json").read_text(
      ))["geometry"]) == small
  # ... and the network loaded from it has the grids of that geometry.
  net = pretrained.load_model(straight)
  assert net.geometry == small
  assert net(np.zeros((2, m, m), np.float32)).shape == (2, n, n, n)

  # Data parallel, in the background while the checks below run: two
  # processes on loopback (one CPU device each, gloo all-reduce) with the
  # same global batch and 3 steps. (One process with two devices runs the
  # same partitioned step; left out to keep the suite under 10 minutes on 2
  # cores: the data placement it adds is one jax.device_put.)
  two_proc = tmp_path / "two_processes"
  job = _start(cmd[:4] + cmd[5:] + [f"--workdir={two_proc}",
                                    "--config.total_steps=3"],
               two_proc, processes=2)

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

  # A time limit stops the run cleanly after the step that passes it, with
  # a checkpoint of that step and its log line; the work directory records
  # what trained (the model card quotes it).
  timed = tmp_path / "timed"
  with pytest.raises(ValueError, match="time_limit_s must be >= 0"):
    _train(tmp_path / "negative", time_limit_s=-1.0)
  assert not (tmp_path / "negative").exists()
  state = _train(timed, time_limit_s=1e-9)
  assert int(state.step) == 1
  assert os.listdir(timed / "checkpoints") == ["1"]
  assert [l["step"] for l in _lines(timed / "metrics.jsonl")] == [1]
  assert "cpu" in json.loads((timed / "config.json").read_text())["hardware"]

  # The two processes log the losses of the straight run: the shards
  # together are the one-process batches (the same samples, augmentations
  # and dropout masks), so only the float32 reduction order differs
  # (amplified by Adam: measured <= 2e-4 by step 3 at XLA's default level,
  # 6e-6 at the suite's; before each process's
  # shard was cut from the global batches, two processes differed by 13-22%).
  ref = _losses(straight, last_step=3)
  _finish(job)
  got = _losses(two_proc)
  assert set(got) == set(ref)
  assert got[(1, "train")] == pytest.approx(ref[(1, "train")], rel=1e-6)
  for key in ref:
    assert got[key] == pytest.approx(ref[key], rel=1e-3), key
  assert sorted(os.listdir(two_proc / "checkpoints")) == ["3"]

  # A batch the devices cannot share is refused in one line.
  res = subprocess.run(cmd + ["--config.batch_size=3"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "XLA_FLAGS":
                            "--xla_force_host_platform_device_count=2"})
  assert res.returncode == 1
  assert "must be divisible by the 2 devices" in res.stderr.splitlines()[-1]
