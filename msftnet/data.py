"""Training data: procedural and stored sources as grain pipelines.

Procedural data (no stored dataset needed): sample index + seed -> solid
parameters (``msftnet.solids.sample_solid``, deterministic per index) ->
batched in grain -> one jit-compiled call per batch rasterises the solids,
simulates the MSFT and the log pattern with a random dark offset, and
(training only) applies one random detector filter per sample:

    grain.MapDataset.range(n) -> [shard by process] -> shuffle(seed) -> repeat
      (a new permutation each epoch) -> map(params) -> batch
      -> map(simulate [+ augment]) -> iterator

Each batch is a dict of numpy arrays::

    pattern  [B, M, M] float32 in [0, 1]  (network input, augmented in training;
                                           0 off ``valid``: augment.network_input)
    valid    [B, M, M] bool                (False where a filter destroyed data)
    target   [B, M, M] float32 in [0, 1]  (the clean pattern of the target)
    loss_target [B, M, M] float32          (the 64^3 target's pattern at the
                                            paper's loss eps = 100)
    density  [B, N, N, N] float32 in [0, 1], (z, y, x), the 64^3 target
    label    [B] int32                     (index into solids.CLASSES)
    index    [B] int64                     (sample index)

Splits follow the paper (5:1): of ``n`` indices the first ``5n/6`` train, the
rest validate. The paper's stored layout (``infos*.csv``, ``real/``,
``scatter/``) is read by :class:`PaperSource` into the same dict.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import multiprocessing
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from msftnet import augment
from msftnet import paper_io
from msftnet import raster
from msftnet import solids
from msftnet.geometry import Geometry
from msftnet.msft import intensity
from msftnet.msft import log_pattern

__all__ = [
    "DataConfig",
    "sample_params",
    "simulate_batch",
    "procedural_dataset",
    "index_dataset",
    "split_sizes",
    "PaperSource",
    "paper_dataset",
    "read_infos",
    "write_paper_dataset",
    "DARK_OFFSET_LOG10",
]

#: log10 of the dark offset relative to the pattern maximum, sampled
#: uniformly: the range of the best offsets measured on the paper's 100
#: stored validation patterns (benchmarks/results/paper_fidelity.jsonl).
DARK_OFFSET_LOG10 = (-5.3, -1.7)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """What a procedural dataset produces (hashable: keys the jit cache).

  Attributes:
    n_samples: total indices; split 5:1 into train and validation.
    seed: base seed: sample ``i`` is solid ``sample_solid((seed, i))``.
    geometry: the experiment the network learns (:class:`msftnet.Geometry`):
      patterns of ``detector_px^2`` on its q grid, density targets of
      ``n_voxels^3`` (64 in the paper), and its physics (box, wavelength,
      absorption, forward model, material) for the patterns and the loss.
    resolution: voxels per axis of the simulation (default:
      ``geometry.n_voxels``); a multiple of it, e.g. 192: rasterise and
      simulate the pattern at 192^3, then block-mean the target to 64^3
      and threshold it at 0.5, as the paper's dataset.
    test_set: truncated solids (the paper's test set).
  """

  n_samples: int = 140_000
  seed: int = 0
  geometry: Geometry = Geometry()
  resolution: int | None = None
  test_set: bool = False

  def __post_init__(self):
    if not isinstance(self.geometry, Geometry):
      raise ValueError(f"DataConfig.geometry must be a msftnet.Geometry, got "
                       f"{type(self.geometry).__name__}.")
    if self.resolution is None:
      object.__setattr__(self, "resolution", self.geometry.n_voxels)
    if self.resolution % self.geometry.n_voxels:
      raise ValueError(
          f"DataConfig.resolution={self.resolution} must be a multiple of "
          f"the target grid, geometry.n_voxels={self.geometry.n_voxels}.")
    if self.n_samples < 1:
      raise ValueError(f"DataConfig.n_samples must be >= 1, got {self.n_samples}.")
    try:
      self.simulation_geometry
    except ValueError as e:
      raise ValueError(f"DataConfig: {e}") from None

  @functools.cached_property
  def simulation_geometry(self) -> Geometry:
    """:attr:`geometry` on the simulation grid (``resolution`` voxels)."""
    return self.geometry.replace(n_voxels=self.resolution)


def split_sizes(n_samples: int) -> tuple[int, int]:
  """(train, validation) sizes of the paper's 5:1 split."""
  n_train = (5 * n_samples) // 6
  return n_train, n_samples - n_train


def sample_seed(seed: int, index: int) -> int:
  """The deterministic 63-bit seed of sample ``index`` of dataset ``seed``."""
  return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(
      1, np.uint64)[0] >> np.uint64(1))


def sample_params(config: DataConfig, index: int) -> solids.SolidParams:
  """Solid parameters of sample ``index`` (deterministic)."""
  return solids.sample_solid(sample_seed(config.seed, index),
                             test_set=config.test_set)


def _stack_params(params: list[solids.SolidParams]):
  hs = [solids.half_spaces(p) for p in params]
  return (np.stack([h[0] for h in hs]), np.stack([h[1] for h in hs]),
          np.stack([h[2] for h in hs]))


_DARK_STREAM = 0xFFFFFFFF       # the dark offset's key: independent of epochs


def sample_key(seed: int, index, epoch=0) -> jax.Array:
  """PRNG key of sample ``index`` in ``epoch`` (dark offset: epoch-free)."""
  key = jax.random.fold_in(jax.random.key(seed), index)
  return jax.random.fold_in(key, epoch)


@functools.partial(jax.jit, static_argnames=("config", "augmented"))
def _simulate(normals, offsets, quadrics, indices, epochs, *,
              config: DataConfig, augmented: bool):
  g = config.simulation_geometry
  vols = raster.rasterize_batch(normals, offsets, quadrics, config.resolution)
  inten = intensity(vols, g)
  lo, hi = DARK_OFFSET_LOG10
  dark_keys = jax.vmap(lambda i: sample_key(config.seed, i, _DARK_STREAM))(indices)
  u = jax.vmap(lambda k: jax.random.uniform(k, (1, 1), minval=lo,
                                            maxval=hi))(dark_keys)
  peak = jnp.max(inten, axis=(-2, -1), keepdims=True)
  target = log_pattern(inten, eps=peak * 10.0**u)
  factor = config.resolution // config.geometry.n_voxels
  if factor > 1:
    b, n = vols.shape[0], config.geometry.n_voxels
    vols = vols.reshape(b, n, factor, n, factor, n, factor).mean((2, 4, 6))
    vols = (vols > 0.5).astype(jnp.float32)
    inten = intensity(vols, config.geometry)
  # The physics loss compares target-grid patterns at the grid's eps (the
  # paper's 100 at 64^3).
  loss_target = log_pattern(inten, eps=config.geometry.loss_eps)
  if augmented:
    aug_keys = jax.vmap(lambda i, e: sample_key(config.seed, i, e))(
        indices, epochs)
    # lax.map, not vmap: under vmap the filter choice becomes a select that
    # evaluates all ten filters for every sample.
    pattern, valid = jax.lax.map(lambda a: augment.random_filter(*a),
                                 (aug_keys, target))
    pattern = augment.network_input(pattern, valid)
  else:
    pattern, valid = target, jnp.ones(target.shape, bool)
  return pattern, valid, target, vols, loss_target


def simulate_batch(config: DataConfig, params: list[solids.SolidParams],
                   indices, *, augmented: bool = False, epochs=None) -> dict:
  """Simulate a batch of solids (see the module docstring for the keys).

  Each sample's dark offset comes from its own index (and the seed), its
  filter from its index and ``epochs`` (default 0): a sample does not depend
  on the batch it is in, and gets a new filter every epoch.
  """
  normals, offsets, quadrics = _stack_params(params)
  indices = np.asarray(indices, np.int64)
  epochs = (np.zeros_like(indices) if epochs is None
            else np.asarray(epochs, np.int64))
  pattern, valid, target, vols, loss_target = _simulate(
      normals, offsets, quadrics, indices.astype(np.uint32),
      epochs.astype(np.uint32), config=config, augmented=augmented)
  return {
      "pattern": np.asarray(pattern, np.float32),
      "valid": np.asarray(valid, bool),
      "target": np.asarray(target, np.float32),
      "density": np.asarray(vols, np.float32),
      "loss_target": np.asarray(loss_target, np.float32),
      "label": np.array([solids.CLASSES.index(p.polyhedron) for p in params],
                        np.int32),
      "index": indices,
  }


def index_dataset(config: DataConfig, split: str, *,
                  shuffle: bool | None = None, shard_index: int | None = None,
                  shard_count: int | None = None,
                  global_batch_size: int | None = None) -> grain.MapDataset:
  """The ``(index, epoch)`` stream behind :func:`procedural_dataset`.

  Training: the first ``5n/6`` indices, a new permutation every epoch
  (shuffle, then repeat), endless. Validation: the rest, in order, once.

  With ``shard_count > 1`` (several processes) the stream is the same for
  every process count: it is cut into global batches of
  ``global_batch_size`` items, and shard ``k`` holds, from each global batch,
  the ``k``-th of its ``shard_count`` consecutive slices. Batched by
  ``global_batch_size // shard_count``, the shards' batches together are
  exactly the one-process batches (a trailing partial global batch is
  dropped), so ``P`` processes train on the same samples, in the same
  order, as one.
  """
  n_train, n_val = split_sizes(config.n_samples)
  if split == "train":
    start, count = 0, n_train
  elif split == "validation":
    start, count = n_train, n_val
  else:
    raise ValueError(f"split must be 'train' or 'validation', got {split!r}.")
  is_train = split == "train"
  shuffle = is_train if shuffle is None else shuffle
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  ds = grain.MapDataset.range(start, start + count)
  per_epoch = len(ds)
  if shuffle:
    ds = ds.seed(config.seed).shuffle()
  if is_train:
    ds = ds.repeat()
  ds = ds.map_with_index(lambda pos, i: (int(i), pos // per_epoch))
  if shard_count == 1:
    return ds
  if not global_batch_size or global_batch_size % shard_count:
    raise ValueError(f"{shard_count} shards need a global batch size that "
                     f"they divide, got {global_batch_size}.")
  local = global_batch_size // shard_count

  def position(k):
    return (k // local) * global_batch_size + shard_index * local + k % local

  # Whole global batches only (the training stream is endless).
  n_local = (len(ds) // global_batch_size) * local
  return grain.MapDataset.range(n_local).map(lambda k: ds[position(int(k))])


#: How the evaluations read a finite validation stream: one simulating thread
#: one batch ahead. (grain's default, 16 threads, simulates up to 16 batches
#: at once before the first is used: on two CPU cores that held an evaluation
#: of 16 samples for six minutes.)
EVAL_READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)


def procedural_dataset(config: DataConfig, split: str, batch_size: int, *,
                       shuffle: bool | None = None, augmented: bool | None = None,
                       shard_index: int | None = None,
                       shard_count: int | None = None,
                       drop_remainder: bool = True) -> grain.MapDataset:
  """A grain ``MapDataset`` of simulated batches for ``split``.

  Args:
    config: what to simulate.
    split: ``"train"`` (first 5/6 of the indices; a new permutation every
      epoch, augmented by default) or ``"validation"`` (the rest; in order,
      clean).
    batch_size: per-process batch size (the global batch is
      ``batch_size * shard_count``).
    shard_index, shard_count: this process's shard (default: JAX process
      index and count), for multi-host training: the shards' batches
      together are the one-process batches of the global size
      (:func:`index_dataset`).

  Returns:
    An infinite (train) or one-epoch (validation) ``MapDataset`` of batch
    dicts; use ``.to_iter_dataset()`` and save the iterator state with the
    checkpoint.
  """
  shard_count = jax.process_count() if shard_count is None else shard_count
  ds = index_dataset(config, split, shuffle=shuffle, shard_index=shard_index,
                     shard_count=shard_count,
                     global_batch_size=batch_size * shard_count)
  augmented = (split == "train") if augmented is None else augmented
  if split == "validation" and len(ds) < batch_size and drop_remainder:
    raise ValueError(f"{split}: {len(ds)} samples per process, fewer than "
                     f"batch_size={batch_size}.")
  ds = ds.map(lambda ie: (ie[0], ie[1], sample_params(config, ie[0])))
  ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=list)
  return ds.map(lambda items: simulate_batch(
      config, [p for _, _, p in items], [i for i, _, _ in items],
      augmented=augmented, epochs=[e for _, e, _ in items]))


# ------------------------------------------------------- the paper's files
def read_infos(path) -> list[dict]:
  """Rows of a paper ``infos*.csv`` (sphere axes ``{x,y,z}`` rejoined)."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such file.")
  with open(path, newline="") as f:
    rows = [solids.read_row(r) for r in csv.DictReader(f)]
  if not rows:
    raise ValueError(f"{path}: no rows; expected the paper's metadata CSV.")
  missing = {"nr", "real", "scatter", "polyhedron"} - set(rows[0])
  if missing:
    raise ValueError(f"{path}: missing columns {sorted(missing)}.")
  return rows


class PaperSource:
  """Random-access source over the paper's layout (grain-compatible).

  ``root`` holds ``infos*.csv`` files whose ``real`` / ``scatter`` columns
  are paths relative to ``root``; volume files may be the paper's PNGs or
  ``.npy``. Each record: ``pattern [M, M]``, ``valid`` (all True),
  ``target`` (= pattern), ``density [64, 64, 64]`` (block mean of 3^3 from
  192^3 and threshold 0.5, as the paper; 64^3 volumes unchanged), ``label``,
  ``index`` (the ``nr`` column).
  """

  def __init__(self, root, csv_names=None, *, target_voxels: int = 64,
               threshold: float | None = 0.5):
    root = os.fspath(root)
    if csv_names is None:
      if not os.path.isdir(root):
        raise ValueError(f"{root}: no such folder.")
      csv_names = sorted(f for f in os.listdir(root)
                         if f.startswith("infos") and f.endswith(".csv"))
      if not csv_names:
        raise ValueError(f"{root}: no infos*.csv metadata files found.")
    self.root = root
    self.rows = [r for name in csv_names
                 for r in read_infos(os.path.join(root, name))]
    self.target_voxels = target_voxels
    self.threshold = threshold

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, i: int) -> dict:
    row = self.rows[i]
    vol = paper_io.read_density(os.path.join(self.root, row["real"]))
    factor = vol.shape[0] // self.target_voxels
    if factor > 1:
      vol = paper_io.downsample(vol, factor, threshold=self.threshold)
    pattern = paper_io.read_pattern(os.path.join(self.root, row["scatter"]))
    return {
        "pattern": pattern, "valid": np.ones(pattern.shape, bool),
        "target": pattern, "density": vol,
        "label": np.int32(solids.CLASSES.index(row["polyhedron"])),
        "index": np.int64(row["nr"]),
    }

  def params(self, i: int) -> solids.SolidParams:
    return solids.SolidParams.from_row(self.rows[i])


def paper_dataset(root, batch_size: int, *, csv_names=None, seed: int = 0,
                  shuffle: bool = False) -> grain.MapDataset:
  """Batches of :class:`PaperSource` records (numpy-stacked)."""
  ds = grain.MapDataset.source(PaperSource(root, csv_names))
  if shuffle:
    ds = ds.seed(seed).shuffle()
  return ds.batch(batch_size)


#: Samples per numbered sub-folder of ``real/`` and ``scatter/`` (the paper's).
PER_FOLDER = 10_000
PAPER_COLUMNS = ("nr", "real", "scatter", "polyhedron", "symm", "theta",
                 "phi", "alpha", "size", "stretch", "axis")


def _sample_paths(nr: int) -> tuple[str, str]:
  folder = (nr - 1) // PER_FOLDER + 1
  return f"./real/{folder}/{nr}r.png", f"./scatter/{folder}/{nr}s.png"


def _writer_config(resolution: int, seed: int, n: int, test_set: bool
                   ) -> DataConfig:
  return DataConfig(n_samples=n, seed=seed,
                    geometry=Geometry(n_voxels=resolution), test_set=test_set)


def _write_samples(args) -> int:
  """Write samples ``nrs`` (one block); returns how many were new."""
  out, nrs, resolution, seed, n, test_set, batch = args
  config = _writer_config(resolution, seed, n, test_set)
  todo = [nr for nr in nrs if not all(
      os.path.exists(os.path.join(out, p)) for p in _sample_paths(nr))]
  for start in range(0, len(todo), batch):
    chunk = todo[start:start + batch]
    # Pad to the fixed batch size (one compilation); padding is dropped.
    padded = chunk + [chunk[-1]] * (batch - len(chunk))
    params = [sample_params(config, nr - 1) for nr in padded]
    sims = simulate_batch(config, params, [nr - 1 for nr in padded])
    for j, nr in enumerate(chunk):
      real, scatter = _sample_paths(nr)
      paper_io.write_density(os.path.join(out, real), sims["density"][j])
      paper_io.write_pattern(os.path.join(out, scatter), sims["target"][j])
  return len(todo)


def _write_infos(out: str, n: int, seed: int, resolution: int,
                 test_set: bool) -> list[str]:
  """(Re)write ``infosK.csv`` for all samples; returns the file names."""
  config = _writer_config(resolution, seed, n, test_set)
  columns = list(PAPER_COLUMNS) + (["cut", "caxis"] if test_set else [])
  columns.append("seed")
  names = []
  for folder in range(1, (n - 1) // PER_FOLDER + 2):
    lo, hi = (folder - 1) * PER_FOLDER + 1, min(folder * PER_FOLDER, n)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for nr in range(lo, hi + 1):
      row = sample_params(config, nr - 1).to_row()
      real, scatter = _sample_paths(nr)
      writer.writerow({"nr": nr, "real": real, "scatter": scatter, **row})
    name = f"infos{folder}.csv"
    with paper_io.atomic_write(os.path.join(out, name), "w") as f:
      f.write(buf.getvalue())
    names.append(name)
  return names


def write_paper_dataset(out, n: int, *, seed: int = 0, resolution: int = 192,
                        test_set: bool = False, workers: int = 1,
                        batch: int = 8, progress: bool = True) -> list[str]:
  """Write ``n`` procedural samples in the paper's layout; resumable.

  Sample ``nr`` (1-based) is ``sample_params(config, nr - 1)``; its volume
  goes to ``real/K/NNNr.png`` (the paper's flattened 16-bit PNG) and its
  normalised log pattern (random dark offset) to ``scatter/K/NNNs.png``,
  ``K = (nr - 1) // 10000 + 1``; ``infosK.csv`` lists them with the paper's
  columns, plus ``cut, caxis`` for ``test_set`` (truncated solids) and
  ``seed``. The same arguments give byte-identical files whatever
  ``workers`` (spawned processes); every file is written atomically and
  finished samples are skipped, so an interrupted call is resumed by
  calling it again (the CSVs are rewritten at the end). Returns the CSV
  names. ``progress``: a bar with rate and ETA on stderr.
  """
  out = os.fspath(out)
  if n < 1 or workers < 1 or batch < 1:
    raise ValueError(f"n, workers and batch must be >= 1, got {n}, {workers} "
                     f"and {batch}.")
  if resolution not in (64, 192):
    raise ValueError(f"resolution must be 64 or 192, got {resolution}.")
  if os.path.exists(out) and not os.path.isdir(out):
    raise ValueError(f"the output folder {out} is a file, expected a folder.")
  os.makedirs(out, exist_ok=True)
  # Contiguous blocks of `batch` samples, dealt round-robin to the workers.
  jobs = [(out, list(range(s, min(s + batch, n + 1))), resolution, seed, n,
           test_set, batch) for s in range(1, n + 1, batch)]
  pool = (multiprocessing.get_context("spawn").Pool(workers)
          if workers > 1 else None)
  results = pool.imap(_write_samples, jobs) if pool else map(_write_samples,
                                                             jobs)
  try:
    with tqdm(total=n, unit="sample", desc="samples",
              disable=not progress) as bar:
      for job, _ in zip(jobs, results):
        bar.update(len(job[1]))
  finally:
    if pool:
      pool.close()
      pool.join()
  return _write_infos(out, n, seed, resolution, test_set)
