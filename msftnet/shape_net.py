"""What each shot is: class, size, stretch and orientation from the pattern.

A small 2D convolutional network in the spirit of Stielow et al., Mach.
Learn.: Sci. Technol. 1, 045007 (2020), trained supervised on the procedural
generator of :mod:`msftnet.solids`, whose parameters are known. It reads a
log pattern (0 off the valid pixels, as :func:`msftnet.augment.network_input`)
and its valid mask, and predicts

* ``classes``: probabilities of the 21 classes of :data:`msftnet.solids.CLASSES`;
* ``radius``: the equivalent-sphere radius (the ball of the same volume), in
  box units (times ``geometry.box_nm`` for nm);
* ``stretch``: the factor along the class's stretched symmetry axis (> 1
  prolate, < 1 oblate; :class:`msftnet.solids.SolidParams`);
* ``rotation``: the body-to-lab rotation ``R`` (``r = R b``, lab axes
  ``(z, y, x)``, beam along +z) of :meth:`SolidParams.rotation_matrix`.

Orientation is only defined up to the solid's symmetry, and a far-field
pattern does not see the inversion ``r -> -r`` either (Friedel's law). The
group that leaves the pattern unchanged, :func:`pattern_symmetry`, holds the
proper rotations ``g`` with ``g V = V`` or ``g V = -V`` for the class's
vertex set ``V``: ``T`` (12) grows to ``O`` (24) for the tetrahedra, ``D_5``
to ``D_10`` (20) for the decahedron; the octahedral and icosahedral classes
keep ``O`` (24) and ``I`` (60); the chiral snub cube keeps ``O`` (its mirror
image is no rotation of it). The loss and the error
(:func:`orientation_error_deg`) are the minimum over that group; a stretch
or a cut lowers a particle's symmetry further, which both ignore (they are
those of the unstretched, uncut class). Spheres and potatoes have no
orientation here.

Training (:func:`train`) is a plain loop over a cache of clean samples of
the generator, simulated once (:func:`build_cache`: odd samples truncated
as in the paper's test set; ``WORKDIR/cache/``, resumable): batch ``k``
draws its samples and which of them go through the paper's
simulated-experiment filter (half, with fresh noise every time) from
``(seed, k)`` alone, so a run resumes exactly from its last checkpoint
(``WORKDIR/checkpoint.msgpack``, written atomically). Simulating is what
costs on a CPU (about 60 samples/s against 150 for a training step's
batch): a cache seen many times with a filter drawn anew learnt where
simulating every batch afresh did not (``docs/results.md``). The model directory
(:func:`export`, :func:`load`) holds ``config.json``, ``MODEL_CARD.md`` and
``variables.msgpack`` (a few MB: one file, no orbax tree).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import numbers
import os
import time

from absl import logging
import flax.linen as nn
from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.spatial import cKDTree

from msftnet import augment
from msftnet import data as data_lib
from msftnet import records
from msftnet import solids
from msftnet.geometry import Geometry
from msftnet.paper_io import atomic_write
from msftnet.refine import measurement as meas

__all__ = [
    "ShapeNet", "ShapeEstimate", "ShapeModel", "pattern_symmetry",
    "orientation_error_deg", "reduced_rotation", "targets", "simulate",
    "train", "export", "load", "predict", "predict_fit", "predict_simulated",
    "DEFAULT_SHAPE_MODEL_DIR",
    "NO_ORIENTATION",
]

DEFAULT_SHAPE_MODEL_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "models", "shape")

#: Classes without an orientation (a ball's stretch axis is not predicted;
#: every potato is a different random hull).
NO_ORIENTATION = ("Sphere", "Potato")
_GROUP_PAD = 60                       # the largest group, I


# ------------------------------------------------------------- symmetry
def _frame(a, b, sign=1.0):
  return np.stack([a, b, sign * np.cross(a, b)], axis=1)


@functools.cache
def pattern_symmetry(name: str) -> np.ndarray:
  """The proper rotations ``[G, 3, 3]`` that leave the pattern of class
  ``name`` unchanged: ``g V = V`` or ``g V = -V`` (see the module doc).

  Found from the vertices: a vertex ``a`` and a nearest neighbour ``b`` can
  only go to a pair at the same radii and angle; each such map is kept if it
  carries the vertex set onto itself (or its inverse). Spheres and potatoes:
  the identity only.
  """
  solids._check_class(name)
  if name in NO_ORIENTATION:
    return np.eye(3)[None]
  v = solids.base_polyhedron(name).astype(np.float64)
  tree = cKDTree(v)
  norms = np.linalg.norm(v, axis=1)
  a = v[0]
  d = np.linalg.norm(v - a, axis=1)
  d[0] = np.inf
  cand_b = np.flatnonzero(np.abs(np.linalg.norm(np.cross(v, a), axis=1)) > 1e-6)
  j = cand_b[np.argmin(d[cand_b])]
  b = v[j]
  f_inv = np.linalg.inv(_frame(a, b))
  tol = 1e-6
  found = []
  for i in np.flatnonzero(np.abs(norms - norms[0]) < tol):
    for k in np.flatnonzero((np.abs(norms - norms[j]) < tol)
                            & (np.abs(v @ v[i] - a @ b) < tol)):
      if k == i:
        continue
      for sign in (1.0, -1.0):
        g = _frame(v[i], v[k], sign) @ f_inv
        if not np.allclose(g @ g.T, np.eye(3), atol=1e-6):
          continue
        if tree.query(v @ g.T)[0].max() > tol:
          continue
        found.append(g if sign > 0 else -g)   # improper h -> proper -h
  out = []
  for g in found:
    if not any(np.allclose(g, h, atol=1e-6) for h in out):
      out.append(g)
  return np.stack(out)


@functools.cache
def _group_table() -> np.ndarray:
  """``[21, 60, 3, 3]``: each class's group, padded with the identity."""
  table = np.tile(np.eye(3), (len(solids.CLASSES), _GROUP_PAD, 1, 1))
  for c, name in enumerate(solids.CLASSES):
    g = pattern_symmetry(name)
    table[c, :len(g)] = g
  return table.astype(np.float32)


def _angle_deg(r) -> np.ndarray:
  tr = np.trace(r, axis1=-2, axis2=-1)
  return np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))


def orientation_error_deg(r_pred, r_true, name: str) -> float:
  """Smallest rotation angle (degrees) between ``r_pred`` and any of the
  orientations ``r_true g`` the pattern cannot tell from ``r_true``."""
  g = pattern_symmetry(name)
  cands = np.einsum("ij,gjk->gik", np.asarray(r_true, np.float64), g)
  rel = np.einsum("gji,jk->gik", cands, np.asarray(r_pred, np.float64))
  return float(_angle_deg(rel).min())


def reduced_rotation(r, name: str) -> np.ndarray:
  """The representative of ``r``'s orientations (``r g``) with the smallest
  rotation angle from the identity: one answer per orientation class."""
  cands = np.einsum("ij,gjk->gik", np.asarray(r, np.float64),
                    pattern_symmetry(name))
  return cands[int(np.argmin(_angle_deg(cands)))]


def _rotation_from_6d(x):
  """Gram-Schmidt of two predicted vectors -> a rotation (columns)."""
  a, b = x[..., :3], x[..., 3:]
  e1 = a / (jnp.linalg.norm(a, axis=-1, keepdims=True) + 1e-8)
  b = b - jnp.sum(e1 * b, -1, keepdims=True) * e1
  e2 = b / (jnp.linalg.norm(b, axis=-1, keepdims=True) + 1e-8)
  e3 = jnp.cross(e1, e2)
  return jnp.stack([e1, e2, e3], axis=-1)


# -------------------------------------------------------------- network
class ShapeNet(nn.Module):
  """``[B, M, M]`` pattern and mask -> class logits, log radius, log
  stretch and a 6D rotation (see the module docstring)."""

  width: int = 16
  n_classes: int = len(solids.CLASSES)

  @nn.compact
  def __call__(self, pattern, valid):
    x = jnp.stack([jnp.asarray(pattern, jnp.float32),
                   jnp.asarray(valid, jnp.float32)], axis=-1)
    w = self.width
    for k, feats in enumerate((w, 2 * w, 4 * w, 8 * w, 8 * w)):
      x = nn.Conv(feats, (5, 5) if k == 0 else (3, 3), strides=(2, 2))(x)
      x = nn.GroupNorm(num_groups=min(8, feats))(x)
      x = nn.relu(x)
      x = nn.Conv(feats, (3, 3))(x)
      x = nn.GroupNorm(num_groups=min(8, feats))(x)
      x = nn.relu(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(16 * w)(x))
    return {"logits": nn.Dense(self.n_classes)(x),
            "log_radius": nn.Dense(1)(x)[:, 0] - 1.6,
            "log_stretch": nn.Dense(1)(x)[:, 0],
            "rot6": nn.Dense(6)(x) + jnp.array([1., 0, 0, 0, 1, 0])}


# ------------------------------------------------------------------ data
def targets(params: list[solids.SolidParams], densities) -> dict:
  """Supervised targets of a batch of solids and their ``[B, N, N, N]``
  rasterised densities (the radius is the density's equivalent radius)."""
  n = densities.shape[-1]
  vol = np.asarray(densities, np.float64).reshape(len(params), -1).sum(1)
  radius = np.cbrt(3 * np.maximum(vol, 1.0) / (4 * np.pi)) / n
  return {
      "label": np.array([solids.CLASSES.index(p.polyhedron) for p in params],
                        np.int32),
      "log_radius": np.log(radius).astype(np.float32),
      "log_stretch": np.log([p.stretch for p in params]).astype(np.float32),
      "rotation": np.stack([p.rotation_matrix() for p in params]
                           ).astype(np.float32),
      "has_orientation": np.array([p.polyhedron not in NO_ORIENTATION
                                   for p in params], np.float32),
  }


#: What :func:`_filter_batch` does to a row, by its mode.
FILTER_MODES = ("clean", "simulated_experiment", "measured_image")


def simulate(seed: int, indices, geometry: Geometry = Geometry(), *,
             truncated=None, filtered=None, measured=False) -> dict:
  """The samples ``indices`` of the generator with ``seed``: ``pattern``,
  ``valid`` (network inputs) and :func:`targets`, plus ``params``.

  Sample ``i`` is ``solids.sample_solid(data.sample_seed(seed, i))``,
  truncated when ``truncated`` (default: odd ``i``) and put through the
  simulated-experiment filter (key ``fold_in(key(seed), i)``) when
  ``filtered`` (default: ``i // 2`` odd); both may be booleans for all.
  Rows where ``measured`` (a boolean or one per index) go through the
  ``measured_image`` filter instead (:mod:`msftnet.augment`: like the
  paper's experimental images), with the same key.
  """
  indices = np.asarray(indices, np.int64)
  trunc = (indices % 2 == 1) if truncated is None else np.broadcast_to(
      truncated, indices.shape)
  filt = ((indices // 2) % 2 == 1) if filtered is None else np.broadcast_to(
      filtered, indices.shape)
  meas = np.broadcast_to(np.asarray(measured, bool), indices.shape)
  mode = np.where(meas, 2, np.where(filt, 1, 0))
  params = [solids.sample_solid(data_lib.sample_seed(seed, int(i)),
                                test_set=bool(t))
            for i, t in zip(indices, trunc)]
  config = data_lib.DataConfig(n_samples=1, seed=seed, geometry=geometry)
  sim = data_lib.simulate_batch(config, params, indices)
  pattern, valid = sim["pattern"], sim["valid"]
  if mode.any():
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(
        jnp.asarray(indices, jnp.uint32))
    pattern, valid = _filter_batch(jnp.asarray(pattern, jnp.float32),
                                   jnp.asarray(mode, jnp.int32), keys,
                                   n_modes=int(mode.max()) + 1)
  pattern = np.asarray(augment.network_input(pattern, valid), np.float32)
  return {"pattern": pattern, "valid": np.asarray(valid, bool),
          "params": params, "truncated": trunc, "filtered": filt & ~meas,
          "measured": meas,
          **targets(params, sim["density"])}


_CACHE_KEYS = ("pattern", "label", "log_radius", "log_stretch", "rotation",
               "has_orientation")
CACHE_PART = 512


def build_cache(folder: str, seed: int, n: int,
                geometry: Geometry = Geometry(), *, progress: bool = True
                ) -> dict:
  """Clean patterns and targets of samples ``0..n-1`` of the generator with
  ``seed`` (odd samples truncated), simulated once and kept in
  ``folder/part_K.npz`` (``CACHE_PART`` samples each, written atomically;
  a rerun reuses the finished parts). Patterns are stored as float16.
  Returns the arrays of all parts, concatenated."""
  os.makedirs(folder, exist_ok=True)
  parts = []
  t0 = time.perf_counter()
  n_parts = -(-n // CACHE_PART)
  made = 0
  for k in range(n_parts):
    path = os.path.join(folder, f"part_{k:05d}.npz")
    if not os.path.exists(path):
      idx = np.arange(k * CACHE_PART, min(n, (k + 1) * CACHE_PART))
      sim = simulate(seed, idx, geometry, filtered=False)
      arrays = {key: sim[key] for key in _CACHE_KEYS}
      arrays["pattern"] = arrays["pattern"].astype(np.float16)
      buf = io.BytesIO()
      np.savez(buf, **arrays)
      with atomic_write(path) as f:
        f.write(buf.getvalue())
      made += 1
      if progress:
        rate = made * CACHE_PART / (time.perf_counter() - t0)
        logging.info("shape_net cache: part %d/%d, %.1f samples/s, ETA %.0f s",
                     k + 1, n_parts, rate,
                     (n_parts - k - 1) * CACHE_PART / max(rate, 1e-9))
    with np.load(path) as z:
      parts.append({key: z[key] for key in _CACHE_KEYS})
  return {key: np.concatenate([p[key] for p in parts])[:n]
          for key in _CACHE_KEYS}


# ------------------------------------------------------------------ loss
def _loss(out, batch, weights):
  logp = jax.nn.log_softmax(out["logits"])
  ce = -jnp.take_along_axis(logp, batch["label"][:, None], 1)[:, 0]
  rad = (out["log_radius"] - batch["log_radius"]) ** 2
  stretch = (out["log_stretch"] - batch["log_stretch"]) ** 2
  r_pred = _rotation_from_6d(out["rot6"])
  g = jnp.asarray(_group_table())[batch["label"]]       # [B, 60, 3, 3]
  cands = jnp.einsum("bij,bgjk->bgik", batch["rotation"], g)
  # ||R_pred - R_true g||^2 = 6 - 2 tr(R_pred^T R_true g)
  tr = jnp.einsum("bgik,bik->bg", cands, r_pred)
  orient = (6.0 - 2.0 * jnp.max(tr, axis=1)) / 8.0
  orient = orient * batch["has_orientation"]
  terms = {"class": ce.mean(), "radius": rad.mean(),
           "stretch": stretch.mean(), "orientation": orient.mean()}
  total = sum(weights[k] * v for k, v in terms.items())
  acc = (jnp.argmax(out["logits"], -1) == batch["label"]).mean()
  return total, {**terms, "loss": total, "top1": acc}


_WEIGHTS = {"class": 1.0, "radius": 10.0, "stretch": 1.0, "orientation": 5.0}
_BATCH_KEYS = ("pattern", "valid", "label", "log_radius", "log_stretch",
               "rotation", "has_orientation")


@functools.partial(jax.jit, static_argnames=("net", "tx"), donate_argnums=0)
def _train_step(state, batch, *, net, tx):
  params, opt_state, step = state

  def loss_fn(p):
    out = net.apply({"params": p}, batch["pattern"], batch["valid"])
    return _loss(out, batch, _WEIGHTS)

  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return (optax.apply_updates(params, updates), opt_state, step + 1), metrics


# ----------------------------------------------------------------- train
@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """A shape-network training run (every field is in ``config.json``)."""

  width: int = 16
  steps: int = 12000
  cache_size: int = 49152            # clean samples simulated once
  batch_size: int = 32
  learning_rate: float = 1e-3
  seed: int = 11                    # the generator's seed for training
  validation_seed: int = 12         # a disjoint stream for validation
  validation_size: int = 256
  log_every: int = 50
  eval_every: int = 500
  checkpoint_every: int = 250
  time_limit_s: float = 0.0
  #: Fraction of every batch through the ``measured_image`` filter (like
  #: the paper's experimental images) instead of clean / simulated
  #: experiment; 0 keeps the original mixture draw for draw.
  measured_fraction: float = 0.0
  #: A shape model directory to start from (a fine-tune); "" starts afresh.
  init_model: str = ""

  def __post_init__(self):
    for f in ("width", "steps", "batch_size", "cache_size",
              "validation_size", "log_every",
              "eval_every", "checkpoint_every"):
      if int(getattr(self, f)) < 1:
        raise ValueError(f"shape_net.TrainConfig.{f} must be >= 1, got "
                         f"{getattr(self, f)}.")
    if not 0.0 <= self.measured_fraction <= 1.0:
      raise ValueError(f"shape_net.TrainConfig.measured_fraction must be in "
                       f"[0, 1], got {self.measured_fraction}.")
    if not self.learning_rate > 0:
      raise ValueError(f"shape_net.TrainConfig.learning_rate must be > 0, "
                       f"got {self.learning_rate}.")
    if self.seed == self.validation_seed:
      raise ValueError("shape_net.TrainConfig: seed and validation_seed must "
                       "differ (training and validation samples would overlap).")


def _optimizer(config: TrainConfig):
  warm = min(200, config.steps // 10 + 1)
  schedule = optax.warmup_cosine_decay_schedule(   # (steps = 1 is allowed)
      0.0, config.learning_rate, warm, max(config.steps, warm + 1),
      end_value=0.02 * config.learning_rate)
  return optax.adamw(schedule, weight_decay=1e-4)


@functools.partial(jax.jit, static_argnames="n_modes")
def _filter_batch(pattern, mode, keys, n_modes: int = len(FILTER_MODES)):
  """Row ``i`` of ``pattern`` as :data:`FILTER_MODES` ``[mode[i]]`` leaves it
  (clean, or through that filter with key ``keys[i]``), in the network's
  input convention (0 off the valid pixels). Only the first ``n_modes``
  modes are computed (every ``mode`` must be below it): a batch with no
  ``measured_image`` row does not pay for that filter."""
  out, valid = pattern, jnp.ones(pattern.shape, bool)
  for m, name in enumerate(FILTER_MODES[1:n_modes], start=1):
    fp, fv = jax.vmap(augment.FILTERS[name])(keys, pattern)
    sel = (mode == m)[:, None, None]
    out, valid = jnp.where(sel, fp, out), jnp.where(sel, fv, valid)
  return augment.network_input(out, valid), valid


def _batch(cache: dict, config: TrainConfig, step: int) -> dict:
  """Batch ``step``: samples drawn from the cache and the filter's choice and
  key, all from ``(seed, step)`` alone (a resumed run sees the same)."""
  rng = np.random.default_rng([config.seed, step])
  n = len(cache["label"])
  idx = rng.integers(0, n, config.batch_size)
  filtered = rng.random(config.batch_size) < 0.5
  mode = filtered.astype(np.int32)
  if config.measured_fraction > 0:
    mode[rng.random(config.batch_size) < config.measured_fraction] = 2
  keys = jax.vmap(lambda j: jax.random.fold_in(
      jax.random.key(config.seed), j))(
          jnp.asarray(step * config.batch_size
                      + np.arange(config.batch_size), jnp.uint32))
  pattern, valid = _filter_batch(
      jnp.asarray(cache["pattern"][idx], jnp.float32), jnp.asarray(mode),
      keys, n_modes=3 if config.measured_fraction > 0 else 2)
  batch = {k: cache[k][idx] for k in _CACHE_KEYS if k != "pattern"}
  return {"pattern": pattern, "valid": valid, **batch}


def _checkpoint_path(workdir):
  return os.path.join(workdir, "checkpoint.msgpack")


def _save_checkpoint(workdir, state):
  params, opt_state, step = jax.device_get(state)
  with atomic_write(_checkpoint_path(workdir)) as f:
    f.write(serialization.to_bytes({"params": params, "opt_state": opt_state,
                                    "step": np.asarray(step)}))


def _init(config: TrainConfig, geometry: Geometry):
  net = ShapeNet(width=config.width)
  m = geometry.detector_px
  if config.init_model:
    start = load(config.init_model)
    if (int(start.info["width"]) != config.width
        or start.geometry.detector_px != m):
      raise ValueError(f"shape_net: init_model {config.init_model} is a "
                       f"width-{start.info['width']} network for "
                       f"{start.geometry.detector_px} px patterns, expected "
                       f"width {config.width} and {m} px.")
    params = start.params
  else:
    params = net.init(jax.random.key(config.seed), jnp.zeros((1, m, m)),
                      jnp.ones((1, m, m)))["params"]
  tx = _optimizer(config)
  return net, tx, (params, tx.init(params), jnp.asarray(0, jnp.int32))


def evaluate(net, params, batch: dict, geometry: Geometry) -> dict:
  """Validation figures of ``params`` on a :func:`simulate` batch: class
  top-1 and top-3, radius median relative error, orientation median error
  (degrees, classes with an orientation), stretch median relative error."""
  est = _apply(net, params, batch["pattern"], batch["valid"])
  prob = np.asarray(est["probabilities"])
  label = np.asarray(batch["label"])
  top3 = np.argsort(-prob, axis=1)[:, :3]
  rad = np.exp(np.asarray(est["log_radius"]))
  rad_true = np.exp(batch["log_radius"])
  errs = [orientation_error_deg(r, t, solids.CLASSES[c])
          for r, t, c, h in zip(np.asarray(est["rotation"]),
                                batch["rotation"], label,
                                batch["has_orientation"]) if h]
  return {
      "top1": float((top3[:, 0] == label).mean()),
      "top3": float((top3 == label[:, None]).any(1).mean()),
      "radius_rel_err": float(np.median(np.abs(rad / rad_true - 1))),
      "stretch_rel_err": float(np.median(np.abs(
          np.exp(np.asarray(est["log_stretch"]) - batch["log_stretch"]) - 1))),
      "orientation_deg": float(np.median(errs)) if errs else float("nan"),
  }


@functools.partial(jax.jit, static_argnames=("net",))
def _apply_jit(net, params, pattern, valid):
  out = net.apply({"params": params}, pattern, valid)
  return {"probabilities": jax.nn.softmax(out["logits"]),
          "log_radius": out["log_radius"], "log_stretch": out["log_stretch"],
          "rotation": _rotation_from_6d(out["rot6"])}


def _apply(net, params, pattern, valid, batch: int = 32) -> dict:
  """The network on ``[B, M, M]`` inputs in fixed-size chunks (one compile)."""
  pattern = np.asarray(pattern, np.float32)
  valid = np.asarray(valid, bool)
  n = len(pattern)
  outs = []
  for s in range(0, n, batch):
    p, v = pattern[s:s + batch], valid[s:s + batch]
    pad = batch - len(p)
    if pad:
      p = np.concatenate([p, np.zeros((pad,) + p.shape[1:], p.dtype)])
      v = np.concatenate([v, np.ones((pad,) + v.shape[1:], bool)])
    o = jax.device_get(_apply_jit(net, params, p, v))
    outs.append({k: x[:batch - pad] for k, x in o.items()})
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def train(config: TrainConfig, workdir: str, geometry: Geometry = Geometry()):
  """Train (or resume) a shape network in ``workdir``; returns the params.

  Writes ``config.json``, ``metrics.jsonl`` (training and validation lines)
  and ``checkpoint.msgpack`` every ``checkpoint_every`` steps and at the end
  (or when ``time_limit_s`` runs out: the same call resumes)."""
  os.makedirs(workdir, exist_ok=True)
  info = {**dataclasses.asdict(config), "geometry": geometry.to_dict(),
          "kind": "shape_net"}
  cfg_path = os.path.join(workdir, "config.json")
  if os.path.exists(cfg_path):
    with open(cfg_path) as f:
      old = json.load(f)
    defaults = dataclasses.asdict(TrainConfig())
    diff = sorted(k for k in info if k not in ("time_limit_s", "steps")
                  and old.get(k, defaults.get(k)) != info[k])
    if diff:
      raise ValueError(f"{workdir} holds a run with another config "
                       f"({', '.join(diff)} differ); use a new workdir.")
  with atomic_write(cfg_path, "w") as f:
    f.write(json.dumps(info, indent=2) + "\n")
  net, tx, state = _init(config, geometry)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  start = 0
  if os.path.exists(_checkpoint_path(workdir)):
    with open(_checkpoint_path(workdir), "rb") as f:
      tree = serialization.from_bytes(
          {"params": state[0], "opt_state": state[1], "step": np.asarray(0)},
          f.read())
    start = int(tree["step"])
    state = (tree["params"], tree["opt_state"], jnp.asarray(start, jnp.int32))
    logging.info("shape_net: resumed at step %d in %s", start, workdir)
  if os.path.exists(metrics_path):
    records.write_jsonl(metrics_path, [r for r in records.read_jsonl(
        metrics_path) if r["step"] <= start])
  n_val = np.arange(config.validation_size)
  val = simulate(config.validation_seed, n_val, geometry,
                 measured=(n_val % 3 == 2) if config.measured_fraction > 0
                 else False)
  cache = build_cache(os.path.join(workdir, "cache"), config.seed,
                      config.cache_size, geometry)
  t0 = last_t = time.perf_counter()
  last_step = start
  step = start
  for step in range(start + 1, config.steps + 1):
    state, metrics = _train_step(state, _batch(cache, config, step - 1),
                                 net=net, tx=tx)
    out_of_time = (config.time_limit_s > 0
                   and time.perf_counter() - t0 > config.time_limit_s)
    if step % config.log_every == 0 or step == config.steps or out_of_time:
      m = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not math.isfinite(m["loss"]):
        raise FloatingPointError(
            f"shape_net: the training loss became {m['loss']} at step {step};"
            f" the last checkpoint in {workdir} is intact.")
      now = time.perf_counter()
      rate = (step - last_step) / max(now - last_t, 1e-9)
      last_t, last_step = now, step
      records.append_jsonl(metrics_path, [{"step": step, "split": "train",
                                           **m, "steps_per_s": rate}])
      logging.info("shape_net step %d/%d  loss %.4f  top1 %.3f  %.2f steps/s"
                   "  ETA %.0f s", step, config.steps, m["loss"], m["top1"],
                   rate, (config.steps - step) / max(rate, 1e-9))
    if step % config.eval_every == 0 or step == config.steps:
      v = evaluate(net, state[0], val, geometry)
      records.append_jsonl(metrics_path, [{"step": step,
                                           "split": "validation", **v}])
      logging.info("shape_net step %d validation: %s", step,
                   ", ".join(f"{k} {x:.4f}" for k, x in v.items()))
    if (step % config.checkpoint_every == 0 or step == config.steps
        or out_of_time):
      _save_checkpoint(workdir, state)
    if out_of_time:
      logging.warning("shape_net: time_limit_s reached at step %d; "
                      "checkpointed, the same command resumes.", step)
      break
  return state[0]


# ---------------------------------------------------------------- models
@dataclasses.dataclass(frozen=True, eq=False)
class ShapeModel:
  """A trained :class:`ShapeNet`: ``net``, ``params``, ``info``
  (``config.json``) and the ``geometry`` it was trained on."""

  net: ShapeNet
  params: dict
  info: dict
  geometry: Geometry
  path: str = ""


def export(workdir: str, out_dir: str, card: str = "") -> None:
  """Write the model directory of a training work directory (atomically)."""
  with open(os.path.join(workdir, "config.json")) as f:
    info = json.load(f)
  config = TrainConfig(**{k: info[k] for k in
                          TrainConfig.__dataclass_fields__ if k in info})
  geometry = Geometry.from_dict(info["geometry"])
  _, _, state = _init(dataclasses.replace(config, init_model=""), geometry)
  with open(_checkpoint_path(workdir), "rb") as f:
    tree = serialization.from_bytes(
        {"params": state[0], "opt_state": state[1], "step": np.asarray(0)},
        f.read())
  info = {**info, "step": int(tree["step"])}
  os.makedirs(out_dir, exist_ok=True)
  with atomic_write(os.path.join(out_dir, "variables.msgpack")) as f:
    f.write(serialization.to_bytes(jax.device_get(tree["params"])))
  with atomic_write(os.path.join(out_dir, "config.json"), "w") as f:
    f.write(json.dumps(info, indent=2) + "\n")
  if card:
    with atomic_write(os.path.join(out_dir, "MODEL_CARD.md"), "w") as f:
      f.write(card)


@functools.cache
def _load_cached(path: str) -> ShapeModel:
  cfg = os.path.join(path, "config.json")
  var = os.path.join(path, "variables.msgpack")
  if not os.path.isfile(var):             # a training work directory
    var = _checkpoint_path(path)
  if not (os.path.isfile(cfg) and os.path.isfile(var)):
    raise ValueError(f"{path}: not a shape model (expected config.json and "
                     "variables.msgpack, or a shape_net training workdir).")
  with open(cfg) as f:
    info = json.load(f)
  geometry = Geometry.from_dict(info["geometry"])
  net = ShapeNet(width=int(info["width"]))
  m = geometry.detector_px
  template = jax.eval_shape(lambda: net.init(
      jax.random.key(0), jnp.zeros((1, m, m)), jnp.ones((1, m, m))))["params"]
  template = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                    template)
  with open(var, "rb") as f:
    raw = f.read()
  try:
    if var.endswith("checkpoint.msgpack"):
      params = serialization.msgpack_restore(raw)["params"]
      params = serialization.from_state_dict(template, params)
    else:
      params = serialization.from_bytes(template, raw)
  except (ValueError, KeyError) as e:
    raise ValueError(f"{var}: does not hold a width-{info['width']} shape "
                     f"network ({e}).") from None
  return ShapeModel(net=net, params=params, info=info, geometry=geometry,
                    path=path)


def load(path: str | os.PathLike | None = None) -> ShapeModel:
  """Load a shape model directory (default: the bundled one) or a training
  work directory of :func:`train`."""
  path = os.path.abspath(os.fspath(DEFAULT_SHAPE_MODEL_DIR if path is None
                                   else path))
  if not os.path.isdir(path):
    raise ValueError(f"{path}: no such shape model directory.")
  return _load_cached(path)


@dataclasses.dataclass(frozen=True)
class ShapeEstimate:
  """What one pattern shows, read by the shape network.

  Attributes:
    classes: ``(name, probability)`` of all 21 classes, best first.
    radius_nm: equivalent-sphere radius.
    stretch: factor along the class's stretched symmetry axis.
    rotation: body-to-lab rotation ``[3, 3]`` (lab ``(z, y, x)``, beam +z),
      reduced by the top class's :func:`pattern_symmetry` to the
      representative closest to the identity; ``None`` for classes without
      an orientation.
    source: what the network read: ``"pattern"`` (the measured pattern,
      :func:`predict`) or ``"fitted answer"`` (a reconstruction's
      noise-free pattern, :func:`predict_fit`).
    pattern_reading: for a reading of a fitted answer, the network's
      reading of the measured pattern itself, centred where the answer was
      refined (or None).
  """

  classes: tuple
  radius_nm: float
  stretch: float
  rotation: np.ndarray | None
  source: str = "pattern"
  pattern_reading: "ShapeEstimate | None" = None

  def to_json(self, top: int = 5) -> dict:
    """The ``STEM.json`` fields: ``shape_classes`` (the ``top`` best),
    ``radius_nm``, ``stretch``, ``orientation``, ``shape_source`` (what
    the network read), and for a fitted answer's reading
    ``shape_classes_pattern`` and ``radius_nm_pattern``: the ``top`` best
    classes and the radius of the pattern's own."""
    best = self.classes[0][0]
    orient = None
    if self.rotation is not None:
      r = np.asarray(self.rotation)
      angle = float(_angle_deg(r))
      w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
      axis = (w / np.linalg.norm(w)).tolist() if np.linalg.norm(w) > 1e-9 \
          else [1.0, 0.0, 0.0]
      orient = {
          "matrix": np.round(r, 6).tolist(),
          "axis_zyx": [round(x, 6) for x in axis],
          "angle_deg": round(angle, 3),
          "convention": "body-to-lab rotation r = R b, lab axes (z, y, x), "
                        "beam +z; reduced by the pattern's symmetry group of "
                        f"the top class ({len(pattern_symmetry(best))} "
                        "rotations, inversion included) to the smallest angle",
      }
    out = {"shape_classes": [{"class": c, "probability": round(float(p), 6)}
                             for c, p in self.classes[:top]],
           "radius_nm": float(self.radius_nm),
           "stretch": float(self.stretch), "orientation": orient,
           "shape_source": self.source}
    if self.pattern_reading is not None:
      seen = self.pattern_reading.to_json(top)
      out["shape_classes_pattern"] = seen["shape_classes"]
      out["radius_nm_pattern"] = seen["radius_nm"]
    return out


def predict(patterns, valid, model: ShapeModel | None = None
            ) -> list[ShapeEstimate]:
  """Class, size, stretch and orientation of ``[B, M, M]`` patterns
  (log-scaled, the network's input convention; ``valid [B, M, M]``)."""
  model = load() if model is None else model
  patterns = np.asarray(patterns, np.float32)
  valid = np.asarray(valid, bool)
  m = model.geometry.detector_px
  if patterns.ndim == 2:
    patterns, valid = patterns[None], valid[None]
  if patterns.shape[1:] != (m, m) or valid.shape != patterns.shape:
    raise ValueError(f"shape_net.predict: patterns and valid must be [B, {m},"
                     f" {m}], got {patterns.shape} and {valid.shape}.")
  patterns = np.asarray(augment.network_input(patterns, valid), np.float32)
  out = _apply(model.net, model.params, patterns, valid)
  res = []
  for i in range(len(patterns)):
    p = out["probabilities"][i]
    order = np.argsort(-p, kind="stable")
    top = solids.CLASSES[order[0]]
    rot = (None if top in NO_ORIENTATION
           else reduced_rotation(out["rotation"][i], top))
    res.append(ShapeEstimate(
        classes=tuple((solids.CLASSES[j], float(p[j])) for j in order),
        radius_nm=float(np.exp(out["log_radius"][i]) * model.geometry.box_nm),
        stretch=float(np.exp(out["log_stretch"][i])), rotation=rot))
  return res


def predict_fit(densities, dark_levels, geometry: Geometry,
                model: ShapeModel | None = None) -> list[ShapeEstimate]:
  """:func:`predict` of fitted answers instead of measured patterns: each
  density's simulated pattern, noise-free with every pixel valid, log-scaled
  at its fitted dark level (``eps = max(I) 10^u``, the generator's
  convention: :func:`msftnet.refine.measurement.simulate_with_dark_level`),
  read by :func:`predict_simulated`.

  A measured pattern's artefacts (noise, mask, detector response) lie
  outside what the network was trained on; an answer that explains the
  pattern carries its shape into a pattern that does not have them
  (docs/results.md, "The class of the fitted answer").

  Args:
    densities: ``[B, N, N, N]`` (or ``[N, N, N]``) answers on ``geometry``'s
      grid.
    dark_levels: ``[B]`` (or a float) their fitted ``u``.
    geometry: the answers' MSFT geometry (its detector must be the
      model's).
    model: the shape model (default: the bundled one).
  """
  model = load() if model is None else model
  rho = np.asarray(densities, np.float32)
  if rho.ndim == 3:
    rho = rho[None]
  n = geometry.n_voxels
  if rho.ndim != 4 or rho.shape[1:] != (n, n, n):
    raise ValueError(f"shape_net.predict_fit: densities must be [B, {n}, "
                     f"{n}, {n}], got shape {np.shape(densities)}.")
  u = np.asarray(dark_levels, np.float32)
  if u.ndim > 1 or (u.ndim == 1 and u.shape[0] not in (1, len(rho))):
    raise ValueError(f"shape_net.predict_fit: dark_levels must be one value "
                     f"or one per density ({len(rho)}), got shape "
                     f"{u.shape}.")
  if geometry.detector_px != model.geometry.detector_px:
    raise ValueError(
        f"shape_net.predict_fit: the shape model reads "
        f"{model.geometry.detector_px} px patterns, the geometry gives "
        f"{geometry.detector_px}.")
  return predict_simulated(meas.simulate_with_dark_level(
      jnp.asarray(rho), geometry,
      jnp.asarray(np.broadcast_to(u, rho.shape[:1]))), model)


def predict_simulated(patterns, model: ShapeModel | None = None
                      ) -> list[ShapeEstimate]:
  """:func:`predict` of fitted answers' own simulated patterns ``[B, M,
  M]`` (noise-free, every pixel valid; a refinement has them at hand, so
  :func:`predict_fit` need not simulate them again), marked ``source``
  "fitted answer"."""
  p = np.asarray(patterns, np.float32)
  return [dataclasses.replace(e, source="fitted answer")
          for e in predict(p, np.ones(p.shape, bool), model)]


def model_card(config: TrainConfig, validation: dict, command: str) -> str:
  """The model card of a finished run (validation figures of its last step)."""
  lines = [
      "# Shape network (msftnet.shape_net)", "",
      "Class, equivalent-sphere radius, stretch and orientation from one "
      "wide-angle pattern (see `msftnet/shape_net.py`).", "",
      f"- trained with: `{command}`",
      f"- width {config.width}, {config.steps} steps of {config.batch_size} "
      f"samples, learning rate {config.learning_rate}; a cache of "
      f"{config.cache_size} clean samples of generator seed {config.seed} "
      "(odd samples truncated), half of every batch through the "
      "simulated-experiment filter with fresh noise"
      + (f", and a fraction {config.measured_fraction} of every batch "
         "through the measured_image filter instead (like the paper's "
         "experimental images)" if config.measured_fraction else "")
      + (f"; started from the model {config.init_model}"
         if config.init_model else ""),
      f"- validation ({config.validation_size} samples of generator seed "
      f"{config.validation_seed}, same mixture), last step:",
  ]
  lines += [f"  - {k}: {v:.4g}" for k, v in validation.items()
            if k not in ("step", "split")]
  lines += ["", "Held-out figures (seeds never used in training or tuning) "
            "are in `docs/results.md`, \"What each shot is\"; the command "
            "that measures them is `python -m benchmarks.shape_classes`.", ""]
  return "\n".join(lines)


#: The forward fit that orients the top class (:func:`fit_orientation`).
ORIENTATION_FIT = dict(starts=8, coarse_steps=80, steps=30)


def fit_orientation(pattern, valid, estimate: ShapeEstimate,
                    geometry: Geometry, *, classes: int = 1,
                    **fit_kwargs) -> ShapeEstimate:
  """The estimate with its orientation (and stretch) from a forward fit of
  its top ``classes`` classes (:func:`msftnet.fitting.fit`; the network's
  own orientation is no better than chance, ``docs/results.md``); the class
  with the lowest fitted loss among them comes first, the radius stays the
  network's. Spheres and potatoes keep no orientation."""
  from msftnet import fitting
  names = tuple(c for c, _ in estimate.classes if c in fitting.FIT_CLASSES
                )[:classes]
  if not names:
    return estimate
  config = fitting.FitConfig(classes=names, keep=len(names),
                             **{**ORIENTATION_FIT, **fit_kwargs})
  res = fitting.fit(pattern, valid, config=config, geometry=geometry)
  best = res.best
  rot = (None if best.polyhedron in NO_ORIENTATION else
         reduced_rotation(np.asarray(best.rotation), best.polyhedron))
  order = sorted(estimate.classes, key=lambda cp: cp[0] != best.polyhedron)
  return dataclasses.replace(estimate, classes=tuple(order),
                             stretch=float(best.stretch), rotation=rot)


#: Classes :func:`match_basis` compares (a potato has no fixed shape).
MATCH_CLASSES = tuple(c for c in solids.CLASSES if c != "Potato")


def match_basis(density, *, rotations=200, n: int = 32,
                seed: int = 0) -> tuple[tuple[str, float], ...]:
  """The basis classes ranked by how well each, in its best orientation,
  overlaps a reconstructed body: ``((class, aligned IoU), ...)``, best
  first (:data:`MATCH_CLASSES`).

  Each class is rasterised whole and unstretched, with the body's volume, in
  ``rotations`` orientations drawn as the generator draws them
  (:func:`msftnet.solids.random_orientation`, ``seed``; or a sequence of
  ``(theta, phi, alpha)`` of :class:`msftnet.solids.SolidParams`) and
  compared at ``n``^3 with ``density`` (binarised at 0.5 after a block mean; the
  alignment over shifts and the inversion of
  :func:`msftnet.metrics.aligned_iou`). A class read off the shape rather
  than off the pattern: how it compares with the network's is in
  docs/results.md ("A class read off the refined polytope").
  """
  from msftnet import metrics
  from msftnet.raster import rasterize_batch
  rho = np.asarray(density, np.float32)
  if rho.ndim != 3 or len(set(rho.shape)) != 1 or rho.shape[0] % n:
    raise ValueError(f"match_basis: density must be [N, N, N] with N a "
                     f"multiple of {n}, got {rho.shape}.")
  k = rho.shape[0] // n
  target = (rho.reshape(n, k, n, k, n, k).mean((1, 3, 5)) > 0.5
            ).astype(np.float32)
  if not target.any():
    return tuple((c, 0.0) for c in MATCH_CLASSES)
  volume = float(target.sum()) / n ** 3
  if isinstance(rotations, numbers.Integral):
    if rotations < 1:
      raise ValueError(f"match_basis: rotations must be >= 1 or a list of "
                       f"(theta, phi, alpha), got {rotations}.")
    rng = np.random.default_rng(seed)
    angles = [solids.random_orientation(rng) for _ in range(rotations)]
  else:
    angles = [tuple(float(x) for x in a) for a in rotations]
    if not angles or any(len(a) != 3 for a in angles):
      raise ValueError("match_basis: rotations must be >= 1 or a non-empty "
                       "list of (theta, phi, alpha).")
  scores = {}
  for name in MATCH_CLASSES:
    unit = solids.volume(solids.SolidParams(name, size=0.5))
    size = float(min(1.0, 0.5 * (volume / unit) ** (1 / 3)))
    params = [solids.SolidParams(name, size=size, theta=t, phi=p, alpha=a)
              for t, p, a in (angles[:1] if name == "Sphere" else angles)]
    planes = [solids.half_spaces(p) for p in params]
    bodies = np.asarray(rasterize_batch(
        *(jnp.stack([h[i] for h in planes]) for i in range(3)), n))
    scores[name] = float(max(metrics.aligned_iou(b, target) for b in bodies))
  return tuple(sorted(scores.items(), key=lambda kv: -kv[1]))
