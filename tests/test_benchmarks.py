"""The benchmark baselines compute the same model as msftnet.msft."""

import jax.numpy as jnp
import numpy as np

from benchmarks.msft_throughput import naive_einsum_intensity
from benchmarks.msft_throughput import numpy_fft_intensity
from msftnet import Geometry
from msftnet import intensity
from msftnet.metrics import pearson_r


def test_baselines_agree_with_the_kernel():
  g = Geometry()
  rho = np.zeros((1, 64, 64, 64), np.float32)
  rho[0, 20:40, 25:45, 15:50] = 1.0
  ours = np.asarray(intensity(rho, g))
  naive = np.asarray(naive_einsum_intensity(jnp.asarray(rho), g))
  assert np.abs(naive - ours).max() < 1e-5 * ours.max()
  # The FFT baseline lives on the nearest FFT grid (2 pi / 846.6 nm^-1).
  fft = numpy_fft_intensity(rho, g)
  assert pearson_r(np.log(fft + 100), np.log(ours + 100)) > 0.99
