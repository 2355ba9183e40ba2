"""The reconstruction network of Stielow & Scheel (2021), Fig. 3 / section III.

``ReconstructionNet(width)``: pattern ``[B, 128, 128, 1]`` -> density
``[B, 64, 64, 64, 1]`` in [0, 1] (axes ``(z, y, x)`` as everywhere); other
grids (``detector_px``, ``n_voxels``: powers of two, from the training
geometry, :func:`build`) add or drop encoder blocks and decoder stages.

* Encoder (2D): a 7x7 stride-2 pick-up convolution with ``width`` filters and
  3x3 stride-2 max pooling (128 -> 32 px); five residual blocks, each two 3x3
  convolutions (the first with stride 2) plus a strided 1x1 shortcut, summed,
  doubling the filters and halving the size (32 -> 1 px, ``32 width``
  filters).
* A dense latent layer of ``32 width`` units (2048 at the paper's width 64).
* Decoder (3D): reshape to ``1^3``, six stages of 2x2x2 nearest-neighbour
  upsampling followed by two 3x3x3 convolutions, with ``16 width, 8 width,
  ..., width / 2`` filters (1 -> 64 voxels); a final 1x1x1 convolution with a
  sigmoid.
* Every convolution (and the latent layer) is followed by batch norm, leaky
  ReLU (slope 0.01) and dropout (rate 0.2 in the paper). Batch norm uses the
  two-pass variance: the one-pass ``E[x^2] - E[x]^2`` cancels badly in float32
  at the 1-pixel stages (gradients then differed between 1 and 2 devices
  from summation order alone).

At width 64 this has about 200 million parameters, as the paper states
(:func:`count_params` with ``jax.eval_shape``, no allocation).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ReconstructionNet", "PRESETS", "count_params", "build",
           "dummy_input"]

#: Width presets: the paper's, CPU-sized ones, and the tiny one of the tests.
PRESETS = {"paper": 64, "small": 8, "cpu": 2, "tiny": 2}


def shifted_conv3d(x, kernel):
  """'SAME' 3x3x3 convolution as 27 shifted channel matmuls.

  Same result and parameter layout as ``nn.Conv`` (kernel ``[3, 3, 3, I,
  O]``); on XLA:CPU it is several times faster than its native 3D
  convolution for thin layers (I x O <= 16), forward and backward
  (benchmarks/RESULTS.md, "Compile times of training").
  """
  n0, n1, n2 = x.shape[1:4]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
  out = 0
  for a in range(3):
    for b in range(3):
      for c in range(3):
        out = out + jnp.einsum("bzyxi,io->bzyxo",
                               xp[:, a:a + n0, b:b + n1, c:c + n2, :],
                               kernel[a, b, c])
  return out


class _Conv3x3x3(nn.Module):
  """A bias-free 'SAME' 3x3x3 convolution, ``nn.Conv``-compatible parameters."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, 3, x.shape[-1], self.features))
    kernel = kernel.astype(self.dtype)
    x = x.astype(self.dtype)
    if x.shape[-1] * self.features <= 16:
      return shifted_conv3d(x, kernel)
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1, 1), "SAME",
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


class Dropout(nn.Module):
  """``flax.linen.Dropout`` with its mask drawn over the flattened input.

  The same key gives the same mask, value for value (threefry draws depend
  on the flat element index only; tested), but the train step compiles in
  a fraction of the time: XLA's code for an N-dimensional threefry draw on
  CPU is far larger than for a flat one (benchmarks/RESULTS.md). Named ``Dropout`` so
  its variables and random streams keep flax's names (``Dropout_0``).
  """

  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    if self.rate == 1.0:
      return jnp.zeros_like(x)
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep,
                                (x.size,)).reshape(x.shape)
    return jax.lax.select(mask, x / keep, jnp.zeros_like(x))


class _ConvBlock(nn.Module):
  """Convolution -> batch norm -> leaky ReLU -> dropout (2D or 3D)."""

  features: int
  kernel: tuple[int, ...]
  strides: tuple[int, ...] | None = None
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if self.kernel == (3, 3, 3) and self.strides is None:
      x = _Conv3x3x3(self.features, dtype=self.dtype, name="Conv_0")(x)
    else:
      x = nn.Conv(self.features, self.kernel, strides=self.strides,
                  padding="SAME", use_bias=False, dtype=self.dtype)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99,
                     use_fast_variance=False,
                     dtype=self.dtype)(x)
    x = nn.leaky_relu(x, negative_slope=0.01)
    return Dropout(self.dropout_rate)(x, deterministic=not train)


class _ResidualBlock(nn.Module):
  features: int
  dropout_rate: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    kw = dict(dropout_rate=self.dropout_rate, dtype=self.dtype)
    y = _ConvBlock(self.features, (3, 3), (2, 2), **kw)(x, train)
    y = _ConvBlock(self.features, (3, 3), **kw)(y, train)
    shortcut = _ConvBlock(self.features, (1, 1), (2, 2), **kw)(x, train)
    return y + shortcut


class ReconstructionNet(nn.Module):
  """Pattern -> density encoder-decoder (see the module docstring).

  Attributes:
    width: filters of the pick-up convolution (64 in the paper).
    dropout_rate: after every convolution (0.2 in the paper).
    dtype: computation dtype (parameters stay float32).
  """

  width: int = 64
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32
  detector_px: int = 128
  n_voxels: int = 64

  def _check_sizes(self):
    m, n = self.detector_px, self.n_voxels
    if m < 8 or m & (m - 1) or n < 2 or n & (n - 1):
      raise ValueError(f"ReconstructionNet needs powers of two, detector_px "
                       f">= 8 and n_voxels >= 2; got {m} and {n}.")

  @nn.compact
  def __call__(self, patterns, train: bool = False):
    """``[B, M, M, 1]`` (or ``[B, M, M]``) -> ``[B, N, N, N, 1]``."""
    self._check_sizes()
    m = self.detector_px
    x = jnp.asarray(patterns, self.dtype)
    if x.ndim == 3:
      x = x[..., None]
    if x.shape[1:] != (m, m, 1):
      raise ValueError(f"ReconstructionNet expects patterns [B, {m}, {m}, 1], "
                       f"got {tuple(patterns.shape)}.")
    w, kw = self.width, dict(dropout_rate=self.dropout_rate, dtype=self.dtype)
    x = _ConvBlock(w, (7, 7), (2, 2), **kw)(x, train)              # M/2 px
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")    # M/4 px
    for k in range(1, (m // 4).bit_length()):                     # -> 1 px
      x = _ResidualBlock(w * 2**k, **kw)(x, train)
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(32 * w, dtype=self.dtype)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99,
                     use_fast_variance=False,
                     dtype=self.dtype)(x)
    x = nn.leaky_relu(x, negative_slope=0.01)
    x = Dropout(self.dropout_rate)(x, deterministic=not train)
    x = x.reshape((x.shape[0], 1, 1, 1, x.shape[-1]))
    for k in range(self.n_voxels.bit_length() - 1):               # 1 -> N
      x = jnp.repeat(jnp.repeat(jnp.repeat(x, 2, 1), 2, 2), 2, 3)
      features = max(1, (16 * w) >> k)
      x = _ConvBlock(features, (3, 3, 3), **kw)(x, train)
      x = _ConvBlock(features, (3, 3, 3), **kw)(x, train)
    x = nn.Conv(1, (1, 1, 1), dtype=self.dtype)(x)
    return nn.sigmoid(x.astype(jnp.float32))


def build(width: int | str = 64, dropout_rate: float = 0.2,
          dtype=jnp.float32, geometry=None) -> ReconstructionNet:
  """A network by width or preset name (``"paper"``, ``"cpu"``, ``"tiny"``)
  for the grids of ``geometry`` (a ``msftnet.Geometry``; default the
  paper's: 128 px patterns -> 64^3 densities)."""
  sizes = {} if geometry is None else dict(detector_px=geometry.detector_px,
                                           n_voxels=geometry.n_voxels)
  if isinstance(width, str):
    if width not in PRESETS:
      raise ValueError(f"unknown width preset {width!r}; expected one of "
                       f"{sorted(PRESETS)} or an integer.")
    width = PRESETS[width]
  if int(width) < 1:
    raise ValueError(f"width must be >= 1, got {width}.")
  net = ReconstructionNet(width=int(width), dropout_rate=dropout_rate,
                          dtype=dtype, **sizes)
  net._check_sizes()
  return net


def dummy_input(model: ReconstructionNet) -> jax.Array:
  """A zero batch of one pattern in the network's input shape (for init)."""
  return jnp.zeros((1, model.detector_px, model.detector_px, 1))


def count_params(model: ReconstructionNet) -> dict[str, int]:
  """Parameter and batch-statistic counts via ``jax.eval_shape`` (no allocation)."""
  shapes = jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0)}, dummy_input(model),
                         train=False))
  count = lambda tree: int(sum(np.prod(x.shape) for x in
                               jax.tree_util.tree_leaves(tree)))
  return {"params": count(shapes["params"]),
          "batch_stats": count(shapes.get("batch_stats", {}))}
