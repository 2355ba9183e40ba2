"""Detector artefacts as pure, keyed JAX filters that also return a valid mask.

The paper (Stielow & Scheel 2021, section II C and Fig. 2) makes its network
robust to experimental data by applying one random filter per sample at every
training step. Here each filter is a pure function

    f(key, pattern [M, M]) -> (pattern [M, M] in [0, 1], valid_mask [M, M] bool)

with no Python-side randomness: the same key gives the same output, and every
filter runs under ``jax.jit`` and ``jax.vmap``. ``valid_mask`` is False where
the filter destroyed the information (central hole, crop, pixels shifted in
from outside the detector, saturated pixels, the blind spot's core, pixels
overwritten by salt and pepper); noise leaves every pixel valid. The mask is
what the masked pattern loss and the refinement of experimental data use.

Parameters (``../shared/docs/physics.md`` section 4, the paper's code; ``U``
is an independent uniform number in [0, 1) per use, images span [-1, 1]):

==================== =======================================================
uniform_noise        ``x + 0.2 U * uniform(M, M)``, then min-max renormalised
poisson_noise        ``x + 0.1 U * Poisson(1)``, then renormalised
shot_noise           photon counts ``Poisson(x * 10^(1 + U))`` / their maximum
shift                integer shift by up to +-5 px per axis, zero fill
central_hole         zero disc of radius ``10 U`` px about pixel (M/2, M/2)
salt_pepper          a fraction ``0.05 U`` of pixels set to 0 or 1
crop                 outside a disc of radius ``M/4 (1 + U)`` and a rectangle
                     cut by up to ``M/4`` px per side: zero
saturation           ``min((1 + 0.5 U) x, 1)``
blind_spot           ``x * (1 - exp(-r^2 / 2 s^2))``, ``s = U / 4``, centre at
                     ``(U - 0.5, U - 0.5)``; core (attenuation > 1/2) invalid
simulated_experiment shot noise, shift, blind spot, saturation, central hole,
                     crop, shift
==================== =======================================================

Beyond the paper's ten (in :data:`FILTERS`, not in :data:`FILTER_NAMES`, so
:func:`random_filter` is the paper's):

==================== =======================================================
measured_image       like the paper's experimental images (``barke*.png``,
                     ``../shared/docs/physics.md`` section 3): shot noise
                     ``Poisson(x * 10^(2 + 2 U))``, a shift by up to
                     +-5 px, a
                     central hole of radius ``4 U`` px, a rectangular detector
                     window of half-height ``26 + 8 U`` and half-width
                     ``30 + 10 U`` px about a centre within +-2 px of
                     ``M / 2``, 8-bit quantisation; zero pixels invalid (the
                     image format cannot tell a dark pixel from a missing one)
==================== =======================================================
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "network_input",
    "evaluation_input",
    "FILTERS",
    "FILTER_NAMES",
    "apply_filter",
    "apply_filter_batch",
    "random_filter",
    "random_filter_batch",
    "simulated_experiment_offset",
    "evaluation_key",
]

Array = jax.Array
_Op = Callable[[Array, Array, Array], tuple[Array, Array]]

MAX_SHIFT_PX = 5
MAX_HOLE_RADIUS_PX = 10.0


def _u(key) -> Array:
  return jax.random.uniform(key, ())


def _renormalise(x: Array) -> Array:
  lo, hi = jnp.min(x), jnp.max(x)
  span = hi - lo
  return jnp.where(span > 0, (x - lo) / jnp.where(span > 0, span, 1.0), 0.0)


def _centred_coords(m: int) -> tuple[Array, Array]:
  """Pixel offsets from the detector centre (M // 2), rows then columns."""
  c = jnp.arange(m) - m // 2
  return c[:, None], c[None, :]


# --------------------------------------------------------------- operations
# Each op maps (key, x, valid) -> (x, valid): composable, masks carried along.
def _uniform_noise(key, x, valid):
  ks, kn = jax.random.split(key)
  noise = jax.random.uniform(kn, x.shape, x.dtype)
  return _renormalise(x + 0.2 * _u(ks) * noise), valid


def _poisson_noise(key, x, valid):
  ks, kn = jax.random.split(key)
  counts = jax.random.poisson(kn, 1.0, x.shape).astype(x.dtype)
  return _renormalise(x + 0.1 * _u(ks) * counts), valid


def _photon_counts(key, x, log10_peak: float, log10_span: float):
  """``Poisson(x * peak)`` over its maximum, ``peak = 10^(log10_peak +
  log10_span U)`` photons at the pattern's maximum."""
  ks, kn = jax.random.split(key)
  peak = 10.0 ** (log10_peak + log10_span * _u(ks))
  counts = jax.random.poisson(kn, x * peak, x.shape).astype(x.dtype)
  top = jnp.max(counts)
  return jnp.where(top > 0, counts / jnp.maximum(top, 1.0), 0.0)


def _shot_noise(key, x, valid):
  return _photon_counts(key, x, 1.0, 1.0), valid


def _shift(key, x, valid):
  d = jax.random.randint(key, (2,), -MAX_SHIFT_PX, MAX_SHIFT_PX + 1)
  m0, m1 = x.shape
  rows = jnp.arange(m0)[:, None] - d[0]
  cols = jnp.arange(m1)[None, :] - d[1]
  inside = (rows >= 0) & (rows < m0) & (cols >= 0) & (cols < m1)
  src_r, src_c = jnp.clip(rows, 0, m0 - 1), jnp.clip(cols, 0, m1 - 1)
  return (jnp.where(inside, x[src_r, src_c], 0.0),
          inside & valid[src_r, src_c])


def _central_hole(key, x, valid):
  radius = MAX_HOLE_RADIUS_PX * _u(key)
  r, c = _centred_coords(x.shape[0])
  hole = r**2 + c**2 < radius**2
  return jnp.where(hole, 0.0, x), valid & ~hole


def _salt_pepper(key, x, valid):
  ka, kw, kv = jax.random.split(key, 3)
  hit = jax.random.uniform(kw, x.shape) < 0.05 * _u(ka)
  salt = jax.random.bernoulli(kv, 0.5, x.shape)
  return jnp.where(hit, salt.astype(x.dtype), x), valid & ~hit


def _crop(key, x, valid):
  kr, kc = jax.random.split(key)
  m = x.shape[0]
  radius = m / 4 * (1.0 + _u(kr))
  r, c = _centred_coords(m)
  disc = r**2 + c**2 < radius**2
  cut = jnp.floor(jax.random.uniform(kc, (4,)) * (m / 4 + 1)).astype(jnp.int32)
  rows, cols = jnp.arange(m)[:, None], jnp.arange(m)[None, :]
  rect = ((rows >= cut[0]) & (rows < m - cut[1]) &
          (cols >= cut[2]) & (cols < m - cut[3]))
  keep = disc & rect
  return jnp.where(keep, x, 0.0), valid & keep


def _saturation(key, x, valid):
  scaled = (1.0 + 0.5 * _u(key)) * x
  return jnp.minimum(scaled, 1.0), valid & (scaled <= 1.0)


def _blind_spot(key, x, valid):
  ks, kc = jax.random.split(key)
  sigma = _u(ks) / 4
  centre = jax.random.uniform(kc, (2,)) - 0.5
  m0, m1 = x.shape
  yy = jnp.linspace(-1.0, 1.0, m0)[:, None]
  xx = jnp.linspace(-1.0, 1.0, m1)[None, :]
  d2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
  gauss = jnp.exp(-d2 / (2 * jnp.maximum(sigma, 1e-6) ** 2))
  gauss = jnp.where(sigma > 0, gauss, 0.0)
  return x * (1.0 - gauss), valid & (gauss <= 0.5)


_SIM_EXP_CHAIN = (_shot_noise, _shift, _blind_spot, _saturation, _central_hole,
                  _crop, _shift)


def _simulated_experiment(key, x, valid):
  for op, k in zip(_SIM_EXP_CHAIN, jax.random.split(key, len(_SIM_EXP_CHAIN))):
    x, valid = op(k, x, valid)
  return x, valid


def simulated_experiment_offset(key) -> np.ndarray:
  """Where the ``simulated_experiment`` filter with ``key`` moves the
  pattern's centre: the sum of its two shifts, ``(dy, dx)`` px (int64),
  in the convention of :func:`msftnet.centre.find_centre` (the offset of
  q = 0 from pixel ``M // 2``). For benchmarks of the centre search."""
  keys = jax.random.split(key, len(_SIM_EXP_CHAIN))
  out = np.zeros(2, np.int64)
  for op, k in zip(_SIM_EXP_CHAIN, keys):
    if op is _shift:
      out += np.asarray(jax.random.randint(k, (2,), -MAX_SHIFT_PX,
                                           MAX_SHIFT_PX + 1))
  return out


def _measured_image(key, x, valid):
  kn, ks, kh, kw = jax.random.split(key, 4)
  x, valid = _shift(ks, _photon_counts(kn, x, 2.0, 2.0), valid)
  r, c = _centred_coords(x.shape[0])
  hole = r**2 + c**2 < (4.0 * _u(kh)) ** 2
  w = jax.random.uniform(kw, (4,))
  cy, cx = jnp.round(4 * w[2] - 2), jnp.round(4 * w[3] - 2)
  window = ((jnp.abs(r - cy) <= 26 + 8 * w[0])
            & (jnp.abs(c - cx) <= 30 + 10 * w[1]))
  x = jnp.round(jnp.where(window & ~hole, x, 0.0) * 255.0) / 255.0
  return x, valid & (x > 0)


_OPS: dict[str, _Op] = {
    "uniform_noise": _uniform_noise,
    "poisson_noise": _poisson_noise,
    "shot_noise": _shot_noise,
    "shift": _shift,
    "central_hole": _central_hole,
    "salt_pepper": _salt_pepper,
    "crop": _crop,
    "saturation": _saturation,
    "blind_spot": _blind_spot,
    "simulated_experiment": _simulated_experiment,
}

#: The ten filter names, in the order :func:`random_filter` indexes them.
FILTER_NAMES: tuple[str, ...] = tuple(_OPS)

#: Filters beyond the paper's ten (module docstring): reachable by name
#: through :data:`FILTERS` and :func:`apply_filter`, never drawn by
#: :func:`random_filter`.
_EXTRA_OPS: dict[str, _Op] = {"measured_image": _measured_image}


def network_input(pattern, valid):
  """The pattern as the network and the refinement see it: 0 off ``valid``.

  One convention for training (after a filter), inference and evaluation
  (measured patterns, whose masked pixels hold arbitrary numbers): an
  invalid pixel carries no information, so it is 0 whatever the detector or
  the filter left there. Works on numpy and JAX arrays, batched or not.
  """
  return jnp.where(valid, pattern, jnp.zeros((), jnp.asarray(pattern).dtype))


#: Key of the evaluations' simulated-experiment inputs (folded with the
#: sample's index): every evaluation sees the same degraded patterns.
EVALUATION_KEY = 1234


def evaluation_key(index: int):
  """The key of test sample ``index``'s simulated-experiment input:
  ``fold_in(key(EVALUATION_KEY), index)``."""
  return jax.random.fold_in(jax.random.key(EVALUATION_KEY), index)


def evaluation_input(pattern, index: int, condition: str):
  """The evaluations' input for a test sample: ``(pattern, valid)``.

  ``condition``: ``"clean"`` (all pixels valid) or ``"simulated_experiment"``
  (the filter with the key :func:`evaluation_key` ``(index)``).
  """
  pattern = np.asarray(pattern)
  if condition == "clean":
    return pattern, np.ones(pattern.shape, bool)
  if condition != "simulated_experiment":
    raise ValueError(f"condition must be clean or simulated_experiment, got "
                     f"{condition!r}.")
  p, v = apply_filter("simulated_experiment", evaluation_key(index),
                      pattern)
  return np.asarray(p), np.asarray(v)


def _check(pattern) -> Array:
  x = jnp.asarray(pattern)
  if x.ndim != 2:
    raise ValueError(f"augment: pattern must be [M, M], got shape {x.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return x


def _public(op: _Op):
  def f(key, pattern):
    x = _check(pattern)
    out, valid = op(key, x, jnp.ones(x.shape, bool))
    return jnp.clip(out, 0.0, 1.0).astype(x.dtype), valid
  f.__name__ = op.__name__.lstrip("_")
  f.__doc__ = (f"``{f.__name__}`` filter: (key, pattern [M, M]) -> "
               "(pattern, valid_mask); see the module docstring.")
  return f


#: name -> ``f(key, pattern [M, M]) -> (pattern, valid_mask)``.
FILTERS: dict[str, Callable[[Array, Array], tuple[Array, Array]]] = {
    name: _public(op) for name, op in {**_OPS, **_EXTRA_OPS}.items()}


def apply_filter(name: str, key, pattern) -> tuple[Array, Array]:
  """Apply the named filter (e.g. the paper's evaluation ``"simulated_experiment"``)."""
  if name not in FILTERS:
    raise ValueError(f"augment: unknown filter {name!r}; expected one of "
                     f"{', '.join(FILTERS)}.")
  return FILTERS[name](key, pattern)


def random_filter(key, pattern) -> tuple[Array, Array]:
  """One filter chosen uniformly among the ten, as in the paper.

  Returns ``(pattern, valid_mask)``; the choice and its parameters come from
  ``key`` only.
  """
  kc, kf = jax.random.split(key)
  index = jax.random.randint(kc, (), 0, len(FILTER_NAMES))
  branches = [lambda k, x, f=FILTERS[n]: f(k, x) for n in FILTER_NAMES]
  return jax.lax.switch(index, branches, kf, _check(pattern))


def random_filter_batch(key, patterns) -> tuple[Array, Array]:
  """``[B, M, M]`` -> one independent random filter per sample.

  Mapped with ``lax.map`` so each sample runs only its chosen filter (under
  ``vmap`` the choice becomes a select over all ten).
  """
  keys = jax.random.split(key, patterns.shape[0])
  return jax.lax.map(lambda a: random_filter(*a), (keys, patterns))


def apply_filter_batch(name: str, key, patterns) -> tuple[Array, Array]:
  """``[B, M, M]`` -> the named filter with independent parameters per sample."""
  keys = jax.random.split(key, patterns.shape[0])
  return jax.vmap(lambda k, x: apply_filter(name, k, x))(keys, patterns)
