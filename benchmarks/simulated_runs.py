"""Simulated runs shared by the run benchmarks: photon counts of test
solids (:func:`count_frames`) and the trust and centre benchmarks'
raw-count CXI run (:func:`cxi_run`)."""

from __future__ import annotations

import h5py
import jax.numpy as jnp
import numpy as np

import msftnet
from msftnet import data as data_lib


def count_frames(n: int, seed: int, photons: float, geometry):
  """Poisson counts ``[n, M, M]`` (uint16, ``photons`` at each frame's
  brightest pixel) of ``n`` truncated test solids of data seed ``seed``, a
  CXI mask (a beam stop and a module gap) and the true densities."""
  config = data_lib.DataConfig(n_samples=n, seed=seed, geometry=geometry,
                               test_set=True)
  params = [data_lib.sample_params(config, i) for i in range(n)]
  from msftnet.msft import intensity
  sim = data_lib.simulate_batch(config, params, np.arange(n))
  inten = np.asarray(intensity(sim["density"], geometry))
  inten = inten / inten.max(axis=(1, 2), keepdims=True) * photons
  counts = np.random.default_rng(seed).poisson(inten).astype(np.uint16)
  mask = np.zeros(counts.shape[1:], np.uint16)
  r = np.hypot(*np.mgrid[-64:64, -64:64])
  mask[r < 5] = 1 << 4                           # beam stop: shadowed
  mask[:, 90:93] = 1 << 9                        # module gap: missing
  return counts, mask, sim["density"]


def cxi_run(path: str, truth: np.ndarray, geometry, seed: int) -> list[dict]:
  """Write the raw-count CXI run of ``truth [K, N, N, N]``; returns what
  each frame was made with."""
  inten = np.asarray(msftnet.intensity(jnp.asarray(truth), geometry),
                     np.float64)
  rng = np.random.default_rng(seed)
  m = inten.shape[-1]
  r, c = np.mgrid[:m, :m] - m // 2
  frames, masks, made = [], [], []
  for k in range(len(truth)):
    photons = float(10 ** rng.uniform(3, 5))
    counts = rng.poisson(inten[k] / inten[k].max() * photons
                         + 0.05).astype(np.int32)
    dy, dx = (int(s) for s in rng.integers(-4, 5, size=2))
    bad = ((r**2 + c**2 < 6**2) | ((c >= 20) & (c < 24))).astype(np.uint32)
    counts = np.roll(counts, (dy, dx), axis=(0, 1))
    bad = np.roll(bad, (dy, dx), axis=(0, 1))
    rows, cols = np.arange(m), np.arange(m)
    wrapped = (((rows < dy) | (rows >= m + dy))[:, None]
               | ((cols < dx) | (cols >= m + dx))[None, :])
    bad[wrapped] = 1
    frames.append(counts)
    masks.append(bad)
    made.append({"photons": photons, "beam_offset_px": [dy, dx]})
  with h5py.File(path, "w") as f:
    f["entry_1/instrument_1/detector_1/data"] = np.stack(frames)
    f["entry_1/instrument_1/detector_1/mask"] = np.stack(masks)
    f["entry_1/data_1/data"] = h5py.SoftLink(
        "/entry_1/instrument_1/detector_1/data")
  return made
