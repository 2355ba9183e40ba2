"""Trained networks on disk: the bundled default model and exported checkpoints.

A model directory holds ``config.json`` (``width``, ``dropout_rate``, the
training facts and ``geometry``, the :class:`msftnet.Geometry` it was trained
on, grid and physics; a directory without one was trained on the paper's), ``MODEL_CARD.md`` and ``variables/`` (an orbax
``StandardCheckpointer`` tree of ``params`` and ``batch_stats``; no optimiser
state). ``DEFAULT_MODEL_DIR`` is the one shipped inside the package
(``msftnet/models/default``; see its model card).

* :func:`load_model` reads a model directory, or a training work directory of
  ``experiments.train`` (``WORKDIR/checkpoints`` plus ``WORKDIR/config.json``),
  and returns a :class:`Predictor`;
* :func:`save_model` writes one atomically (a temporary directory renamed).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
import warnings
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import orbax.checkpoint as ocp

from msftnet import model as model_lib
from msftnet.geometry import Geometry

__all__ = ["Predictor", "load_model", "save_model", "recorded_geometry",
           "DEFAULT_MODEL_DIR"]

DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 "models", "default")


def recorded_geometry(info: dict) -> Geometry:
  """The geometry a ``config.json`` (``info``) records; the paper's for a
  directory written before it was recorded."""
  fields = info.get("geometry")
  return Geometry() if fields is None else Geometry.from_dict(fields)


@dataclasses.dataclass(frozen=True, eq=False)
class Predictor:
  """A trained :class:`~msftnet.model.ReconstructionNet` in inference mode.

  Attributes:
    width: network width.
    variables: ``{"params": ..., "batch_stats": ...}``.
    info: the ``config.json`` contents.
    path: where it was loaded from.
  """

  width: int
  variables: Any
  info: dict
  path: str = ""

  @functools.cached_property
  def geometry(self) -> Geometry:
    """The geometry the network was trained on (``config.json``'s
    ``geometry``; the paper's for a directory written before it was
    recorded): its grid is the network's input and output grid."""
    return recorded_geometry(self.info)

  @functools.cached_property
  def _apply(self):
    net = model_lib.build(self.width, dropout_rate=0.0,
                          geometry=self.geometry)
    return jax.jit(lambda v, x: net.apply(v, x, train=False)[..., 0])

  @functools.cached_property
  def _mesh(self) -> Mesh:
    return Mesh(np.asarray(jax.local_devices()), ("batch",))

  @functools.cached_property
  def _replicated(self):
    return jax.device_put(self.variables, NamedSharding(self._mesh, P()))

  def __call__(self, patterns) -> jax.Array:
    """``[B, M, M]`` patterns -> ``[B, N, N, N]`` densities in [0, 1] (the
    grids of :attr:`geometry`; 128 px and 64^3 for the paper's).

    With several local devices the batch is split over them (padded to a
    multiple of the device count); with one it runs as it is.
    """
    x = jnp.asarray(patterns, jnp.float32)
    n = jax.local_device_count()
    if n == 1 or x.ndim != 3 or x.shape[0] < 2:
      return self._apply(self.variables, x)
    b = x.shape[0]
    if b % n:
      x = jnp.concatenate([x, jnp.zeros((n - b % n,) + x.shape[1:], x.dtype)])
    x = jax.device_put(x, NamedSharding(self._mesh, P("batch")))
    return self._apply(self._replicated, x)[:b]


def _read_config(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: not a readable model config ({e}).") from None


def _template(width: int, geometry: Geometry):
  net = model_lib.build(width, dropout_rate=0.0, geometry=geometry)
  shapes = jax.eval_shape(lambda: net.init(
      {"params": jax.random.key(0)}, model_lib.dummy_input(net), train=False))
  return jax.tree_util.tree_map(
      lambda s: np.zeros(s.shape, s.dtype), dict(shapes))


def load_model(path: str | os.PathLike | None = None, *, step: int | None = None
               ) -> Predictor:
  """Load a model directory or a training work directory (default: bundled).

  Args:
    path: a directory written by :func:`save_model` (``variables/`` and
      ``config.json``) or a work directory of ``experiments.train``
      (``checkpoints/`` and ``config.json``); ``None``: the bundled model.
    step: for a work directory, the checkpoint step (default: latest).
  """
  path = os.path.abspath(os.fspath(DEFAULT_MODEL_DIR if path is None else path))
  if not os.path.isdir(path):
    raise ValueError(f"{path}: no such model directory.")
  cfg_path = os.path.join(path, "config.json")
  if not os.path.exists(cfg_path):
    raise ValueError(f"{path}: no config.json, expected a model directory "
                     "(msftnet.pretrained.save_model) or a training work "
                     "directory of experiments.train.")
  info = _read_config(cfg_path)
  width = int(info["width"])
  try:
    geometry = recorded_geometry(info)
    model_lib.build(width, geometry=geometry)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{cfg_path}: its geometry is not valid ({e}).") from None
  template = _template(width, geometry)
  if os.path.isdir(os.path.join(path, "variables")):
    with ocp.StandardCheckpointer() as ckpt:
      variables = ckpt.restore(os.path.join(path, "variables"), template)
  elif os.path.isdir(os.path.join(path, "checkpoints")):
    mngr = ocp.CheckpointManager(os.path.join(path, "checkpoints"))
    step = mngr.latest_step() if step is None else step
    mngr.close()
    if step is None:
      raise ValueError(f"{path}/checkpoints: no checkpoint found.")
    # The saved train state (params, batch stats, optimiser state, ...) read
    # as a plain tree; only the network's variables are kept.
    state_dir = os.path.join(path, "checkpoints", str(step), "state")
    with ocp.PyTreeCheckpointer() as ckpt, warnings.catch_warnings():
      # Read onto this process's default device whatever the topology it
      # was trained on; orbax warns about exactly that.
      warnings.filterwarnings("ignore", "Sharding info not provided",
                              UserWarning)
      st = ckpt.restore(state_dir)
    variables = {"params": st["params"], "batch_stats": st["batch_stats"]}
    _check_tree(variables, template, path)
    info = {**info, "step": int(np.asarray(st["step"]))}
  else:
    raise ValueError(f"{path}: neither variables/ nor checkpoints/ found.")
  variables = jax.tree_util.tree_map(jnp.asarray, variables)
  return Predictor(width=width, variables=variables, info=info, path=path)


def _check_tree(variables, template, path) -> None:
  got = jax.tree_util.tree_map(np.shape, variables)
  want = jax.tree_util.tree_map(np.shape, template)
  if got != want:
    raise ValueError(f"{path}: the checkpoint's variables do not match a "
                     f"width-{template['params']['Dense_0']['kernel'].shape[1] // 32} "
                     "network on the geometry of config.json (check it).")


def save_model(out_dir, variables, info: dict, card: str) -> None:
  """Write a model directory atomically (replaces ``out_dir`` if present).

  Args:
    out_dir: target directory.
    variables: ``{"params", "batch_stats"}`` of a ReconstructionNet.
    info: JSON-able facts; must hold ``width``.
    card: the model card (Markdown).
  """
  if "width" not in info:
    raise ValueError("save_model: info must contain the network 'width'.")
  out_dir = os.path.abspath(os.fspath(out_dir))
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-model-")
  try:
    variables = {"params": variables["params"],
                 "batch_stats": variables["batch_stats"]}
    variables = jax.tree_util.tree_map(np.asarray, jax.device_get(variables))
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(os.path.join(tmp, "variables"), variables)
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(info, f, indent=2)
      f.write("\n")
    with open(os.path.join(tmp, "MODEL_CARD.md"), "w") as f:
      f.write(card)
    if os.path.exists(out_dir):
      old = out_dir + ".old"
      shutil.rmtree(old, ignore_errors=True)
      os.replace(out_dir, old)
      os.replace(tmp, out_dir)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
