"""Physics-informed training: data parallel, multi-host, exactly resumable.

``train_and_evaluate(config, workdir)`` trains ``ReconstructionNet`` on the
procedural pipeline of ``msftnet.data`` with the paper's physics loss (or the
supervised / hybrid comparisons), following the flax examples and big_vision:

* data parallel over all devices: a 1-D ``Mesh`` named ``"data"``; the global
  batch is sharded over it, parameters and optimiser state are replicated,
  and ``jax.jit`` inserts the gradient all-reduce (batch norm statistics are
  over the global batch, so 1 and N devices compute the same step);
* multi-host: call ``jax.distributed.initialize`` first (the launcher does,
  from flags or the environment); each process feeds its slice of every
  global batch (:func:`msftnet.data.index_dataset`), so P processes train
  on the batches of one;
* ``train_step(state, batch, rng) -> (state, metrics)``, the dropout key
  ``fold_in(rng, step)``;
* orbax ``CheckpointManager``: parameters, optimiser state, batch statistics,
  step and base key (``state``), and the grain iterator state (``data``),
  every ``checkpoint_every`` steps and at the end, ``keep_checkpoints``
  kept; a restarted run restores the latest and continues exactly;
* validation (no augmentation) every ``eval_every`` steps;
* ``time_limit_s`` (optional, > 0): the run stops cleanly after the first
  step past that many seconds of this process's loop, with a checkpoint of
  that step (a batch job's time slot; the same command resumes it);
* a non-finite loss stops the run with a clear message, the last good
  checkpoint left intact;
* progress (rate, ETA) on the console; metrics to ``WORKDIR/metrics.jsonl``,
  one JSON object per logged step (``step``, ``split``, ``loss``, ...); the
  config to ``WORKDIR/config.json`` (``msftnet.pretrained.load_model`` reads
  a work directory with it).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from absl import logging
from flax.training import train_state
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from msftnet import data as data_lib
from msftnet import losses
from msftnet import model as model_lib
from msftnet import records
from msftnet.geometry import Geometry
from msftnet.paper_io import atomic_write

__all__ = [
    "TrainState", "create_train_state", "train_step", "eval_step",
    "train_and_evaluate", "make_mesh", "NonFiniteLossError", "global_batch",
    "data_config", "training_geometry",
]

BATCH_KEYS = ("pattern", "valid", "density", "loss_target")


class NonFiniteLossError(RuntimeError):
  """Raised when the training loss becomes NaN or infinite."""


class TrainState(train_state.TrainState):
  batch_stats: Any = None
  rng: jax.Array = None           # base key; step keys are fold_in(rng, step)


def make_model(config) -> model_lib.ReconstructionNet:
  dtype = jnp.bfloat16 if config.get("bfloat16", False) else jnp.float32
  return model_lib.build(config.width, config.dropout_rate, dtype=dtype,
                         geometry=training_geometry(config))


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam (the paper) or plain SGD (``config.optimizer``).

  The learning rate lives in the optimiser state (``inject_hyperparams``),
  not in the compiled step: runs that differ only in their learning rate
  share one compiled train step (and the persistent compilation cache).
  """
  kind = config.get("optimizer", "adam")
  if kind not in ("adam", "sgd"):
    raise ValueError(f"config.optimizer must be adam or sgd, got {kind!r}.")
  make = optax.adam if kind == "adam" else optax.sgd
  return optax.inject_hyperparams(make)(learning_rate=config.learning_rate)


def _compiled_init(model, tx, rng):
  """Parameters, batch statistics and optimiser state, compiled once at
  XLA's lowest optimisation level.

  Initialisation is a single pass of ~150 threefry draws and zero fills: run
  eagerly it compiles op by op, jitted at the default level its compilation
  is several times longer than at level 0, and it runs in milliseconds
  either way (benchmarks/RESULTS.md, "Compile times of training"). Same key, same values every time (and within one
  float32 ulp of the eager draws).
  """
  def init(key):
    variables = model.init({"params": key}, model_lib.dummy_input(model),
                           train=False)
    return variables, tx.init(variables["params"])
  return jax.jit(init).lower(rng).compile({"xla_backend_optimization_level": 0})


def create_train_state(config, rng) -> TrainState:
  """Fresh parameters, batch statistics and optimiser state for ``config``."""
  model = make_model(config)
  tx = make_optimizer(config)
  init_rng, state_rng = jax.random.split(rng)
  if isinstance(init_rng, jax.core.Tracer):        # under eval_shape, jit
    variables = model.init({"params": init_rng},
                           model_lib.dummy_input(model), train=False)
    opt_state = tx.init(variables["params"])
  else:
    variables, opt_state = _compiled_init(model, tx, init_rng)(init_rng)
  return TrainState(step=0, apply_fn=model.apply, params=variables["params"],
                    tx=tx, opt_state=opt_state,
                    batch_stats=variables["batch_stats"], rng=state_rng)


def _loss_terms(config, pred, batch, geometry):
  bin_ = losses.binary_loss(pred)
  scatter = losses.scatter_loss(pred, geometry,
                                target_pattern=batch["loss_target"])
  bce = losses.bce_loss(pred, batch["density"])
  kind = config.loss
  if kind == "physics":
    total = scatter + config.binary_weight * bin_
  elif kind == "supervised":
    total = bce
  elif kind == "hybrid":
    total = (scatter + config.binary_weight * bin_
             + config.bce_weight * bce)
  else:
    raise ValueError(f"config.loss must be physics, supervised or hybrid, "
                     f"got {kind!r}.")
  return total, {"loss": total, "scatter": scatter, "binary": bin_, "bce": bce}


def train_step(state: TrainState, batch: dict, rng=None, *, config,
               geometry: Geometry) -> tuple[TrainState, dict]:
  """One Adam step on a (global) batch; pure, jit it at the call site.

  Args:
    state: the train state (replicated).
    batch: ``pattern [B, M, M]``, ``density [B, N, N, N]``, ``loss_target
      [B, M, M]`` (sharded over the batch).
    rng: base key (default ``state.rng``); dropout uses ``fold_in(rng, step)``.
  """
  rng = state.rng if rng is None else rng
  dropout_rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    pred, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats},
        batch["pattern"][..., None], train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    total, metrics = _loss_terms(config, pred[..., 0], batch, geometry)
    return total, (metrics, updates["batch_stats"])

  grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return state, metrics


def eval_step(state: TrainState, batch: dict, *, config, geometry: Geometry
              ) -> dict:
  """Validation metrics on a batch (no dropout, running batch statistics)."""
  pred = state.apply_fn({"params": state.params,
                         "batch_stats": state.batch_stats},
                        batch["pattern"][..., None], train=False)[..., 0]
  _, metrics = _loss_terms(config, pred, batch, geometry)
  metrics["iou"] = jnp.mean(losses.iou(pred, batch["density"]))
  return metrics


def hardware() -> str:
  """What trains: ``"P process(es), D x DEVICE_KIND (backend)"``, recorded in
  ``config.json`` (model cards quote it)."""
  kinds = sorted({d.device_kind for d in jax.devices()})
  return (f"{jax.process_count()} process(es), {jax.device_count()} x "
          f"{' + '.join(kinds)} ({jax.default_backend()})")


def make_mesh(devices=None) -> Mesh:
  """A 1-D data-parallel mesh over all (or the given) devices."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ("data",))


def training_geometry(config) -> Geometry:
  """The experiment of the network's input and output and of its physics
  loss, from the config: the target grid (``target_voxels``, 64^3 in the
  paper), ``detector_px``, ``box_nm``, ``wavelength_nm``, the forward model
  and the material (missing fields: the paper's). ValueError (one
  sentence) for a bad combination."""
  d = Geometry
  try:
    g = Geometry(n_voxels=config.get("target_voxels", d.n_voxels),
                 detector_px=config.get("detector_px", d.detector_px),
                 box_nm=config.get("box_nm", d.box_nm),
                 wavelength_nm=config.get("wavelength_nm", d.wavelength_nm))
    return g.with_physics(config.get("forward_model", "msft"),
                          config.get("material", ""))
  except ValueError as e:
    raise ValueError(f"training config: {e}") from None


def data_config(config) -> data_lib.DataConfig:
  """The procedural data of a training config (its :func:`training_geometry`
  simulated at ``config.resolution``)."""
  return data_lib.DataConfig(n_samples=config.n_samples, seed=config.data_seed,
                             geometry=training_geometry(config),
                             resolution=config.resolution)


def global_batch(batch: dict, mesh: Mesh) -> dict:
  """Assemble this process's shard into a global array sharded over "data"."""
  sharding = NamedSharding(mesh, P("data"))
  out = {}
  for key in BATCH_KEYS:
    local = np.asarray(batch[key])
    if jax.process_count() == 1:
      out[key] = jax.device_put(local, sharding)
    else:
      out[key] = jax.make_array_from_process_local_data(sharding, local)
  return out


def _replicate(tree, mesh: Mesh):
  """Place a host pytree replicated on every device of the mesh (any host)."""
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)))
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))
  return jax.tree_util.tree_map(put, tree)


def _checkpoint_manager(workdir, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.keep_checkpoints, create=True,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir),
                                            "checkpoints"),
                               options=options)


def restore_state(checkpoint_dir, config, step: int | None = None
                  ) -> TrainState:
  """Load a train state saved by :func:`train_and_evaluate` (for inference)."""
  state = create_train_state(config, jax.random.key(config.seed))
  mngr = ocp.CheckpointManager(os.path.abspath(checkpoint_dir))
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise ValueError(f"{checkpoint_dir}: no checkpoint found.")
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(_state_tree(state))))
  return _with_tree(state, restored["state"])


def _state_tree(state: TrainState) -> dict:
  return {"params": state.params, "batch_stats": state.batch_stats,
          "opt_state": state.opt_state, "step": state.step,
          "rng": jax.random.key_data(state.rng)}


def _with_tree(state: TrainState, tree: dict) -> TrainState:
  return state.replace(params=tree["params"], batch_stats=tree["batch_stats"],
                       opt_state=tree["opt_state"], step=tree["step"],
                       rng=jax.random.wrap_key_data(tree["rng"]))


def _truncate_metrics(path, step):
  """Drop logged lines past ``step`` (written after the restored checkpoint)
  and a torn line a killed run may have left."""
  if os.path.exists(path):
    records.write_jsonl(path, [r for r in records.read_jsonl(path)
                               if r["step"] <= step])


def _to_float(metrics) -> dict:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def evaluate(state, config, geometry, mesh, eval_fn) -> dict:
  """Mean validation metrics over ``config.eval_batches`` batches."""
  n_proc = jax.process_count()
  ds = data_lib.procedural_dataset(data_config(config), "validation",
                                   config.batch_size // n_proc)
  it = iter(ds.to_iter_dataset(data_lib.EVAL_READ_OPTIONS))
  sums, count = {}, 0
  for _ in range(min(config.eval_batches, len(ds))):
    metrics = _to_float(eval_fn(state, global_batch(next(it), mesh)))
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + v
    count += 1
  return {k: v / max(count, 1) for k, v in sums.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> TrainState:
  """Train (or resume) in ``workdir``; returns the final state."""
  limit = float(config.get("time_limit_s", 0) or 0)
  if not limit >= 0:                  # before anything is written
    raise ValueError(f"training config: time_limit_s must be >= 0 seconds "
                     f"(0: no limit), got {limit}.")
  os.makedirs(workdir, exist_ok=True)
  geometry = training_geometry(config)
  if jax.process_index() == 0:          # msftnet.pretrained.load_model reads it
    with atomic_write(os.path.join(workdir, "config.json"), "w") as f:
      record = {**json.loads(config.to_json()), "geometry": geometry.to_dict(),
                "hardware": hardware()}
      f.write(json.dumps(record, indent=2) + "\n")
  mesh = make_mesh()
  n_dev, n_proc = mesh.size, jax.process_count()
  if config.batch_size % n_dev:
    raise ValueError(f"config.batch_size={config.batch_size} must be divisible "
                     f"by the {n_dev} devices.")
  state = _replicate(create_train_state(config, jax.random.key(config.seed)),
                     mesh)

  train_ds = data_lib.procedural_dataset(
      data_config(config), "train", config.batch_size // n_proc,
      augmented=config.augment)
  threads = config.get("data_threads", 1)
  train_iter = iter(train_ds.to_iter_dataset(grain.ReadOptions(
      num_threads=threads, prefetch_buffer_size=max(2, threads))))

  mngr = _checkpoint_manager(workdir, config)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  start = mngr.latest_step()
  if start is not None:
    restored = mngr.restore(start, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_state_tree(state)),
        data=ocp.args.JsonRestore()))
    state = _replicate(jax.device_get(_with_tree(state, restored["state"])),
                       mesh)
    train_iter.set_state(restored["data"])
    _truncate_metrics(metrics_path, start)
    logging.info("Resumed from step %d in %s.", start, workdir)
  else:
    start = 0
    _truncate_metrics(metrics_path, 0)

  step_fn = jax.jit(
      lambda s, b: train_step(s, b, config=config, geometry=geometry),
      donate_argnums=0)
  eval_fn = jax.jit(lambda s, b: eval_step(s, b, config=config,
                                           geometry=geometry))

  finite = jax.jit(lambda s: jnp.all(jnp.stack([
      jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(
          (s.params, s.batch_stats, s.opt_state))
      if jnp.issubdtype(x.dtype, jnp.inexact)])))

  def save(step):
    # Never checkpoint a broken state, whatever the logging interval.
    if not bool(finite(state)):
      good = mngr.latest_step()
      raise NonFiniteLossError(
          f"the training state became non-finite by step {step}; stopped "
          f"without saving it. The last good checkpoint (step {good}) in "
          f"{workdir} is intact; lower config.learning_rate or check the "
          "data.")
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_state_tree(state)),
        data=ocp.args.JsonSave(train_iter.get_state())), force=True)
    mngr.wait_until_finished()

  total = config.total_steps
  t0, last_t, last_step = time.perf_counter(), time.perf_counter(), start
  log = (lambda rec: records.append_jsonl(metrics_path, [rec])
         if jax.process_index() == 0 else None)
  for step in range(start + 1, total + 1):
    batch = global_batch(next(train_iter), mesh)
    with jax.set_mesh(mesh):
      state, metrics = step_fn(state, batch)
    out_of_time = bool(limit) and time.perf_counter() - t0 > limit
    if limit and n_proc > 1:          # every process stops at the same step
      out_of_time = bool(multihost_utils.broadcast_one_to_all(
          np.asarray(out_of_time)))
    if step % config.log_every == 0 or step == total or out_of_time:
      m = _to_float(metrics)
      if not np.isfinite(m["loss"]):
        good = mngr.latest_step()
        raise NonFiniteLossError(
            f"training loss became {m['loss']} at step {step}; stopped. The "
            f"last good checkpoint (step {good}) in {workdir} is intact; lower "
            "config.learning_rate or check the data.")
      now = time.perf_counter()
      rate = (step - last_step) / max(now - last_t, 1e-9)
      last_t, last_step = now, step
      rec = {"step": step, "split": "train", **m,
             "steps_per_s": rate, "samples_per_s": rate * config.batch_size}
      log(rec)
      if jax.process_index() == 0:
        eta = (total - step) / max(rate, 1e-9)
        logging.info("step %d/%d  loss %.5f  scatter %.5f  %.2f steps/s  "
                     "ETA %.0f s", step, total, m["loss"], m["scatter"], rate,
                     eta)
    if config.eval_every and (step % config.eval_every == 0 or step == total):
      val = evaluate(state, config, geometry, mesh, eval_fn)
      log({"step": step, "split": "validation", **val})
      if jax.process_index() == 0:
        logging.info("step %d validation: %s", step,
                     ", ".join(f"{k} {v:.5f}" for k, v in val.items()))
    if step % config.checkpoint_every == 0 or step == total or out_of_time:
      save(step)
    if out_of_time:
      if jax.process_index() == 0:
        logging.warning("time_limit_s=%g reached at step %d of %d; "
                        "checkpointed; the same command resumes.", limit,
                        step, total)
      total = step
      break
  if jax.process_index() == 0:
    logging.info("done: %d steps in %.0f s", total - start,
                 time.perf_counter() - t0)
  mngr.close()
  return state
