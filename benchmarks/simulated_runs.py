"""Simulated runs shared by the run benchmarks: photon counts of test solids."""

from __future__ import annotations

import numpy as np

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
