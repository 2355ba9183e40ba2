"""The multi-slice Fourier transform (MSFT): voxel density -> wide-angle field.

Model (Stielow & Scheel, Phys. Rev. E 103, 053312 (2021), eqs. 1-2, and the
MSFT of Barke et al., Nat. Commun. 6, 6187 (2015)); ``../shared/docs/physics.md``:

1. absorption: ``rho_eff[z] = rho[z] * exp(-mu dr sum_{z' <= z} rho[z'])``,
   ``mu`` from :attr:`Geometry.amplitude_attenuation_per_nm`;
2. ``F_z(q) = sum_{y, x} rho_eff[z, y, x] exp(-i (qy y + qx x))``,
   ``x = (i - (N - 1) / 2) dr`` measured from the box centre (the in-plane
   origin only sets the global phase of each pixel, not ``|E|``);
3. ``E(q) = sum_z F_z(q) exp(+i qz(q) z dr)``, ``qz = k - sqrt(k^2 - q^2)``,
   ``z = 0, 1, ..., N - 1`` (the beam travels along +z and enters at z = 0);
4. ``E = 0`` where ``qx^2 + qy^2 >= k^2``.

``E`` is a plain voxel sum (dimensionless, as in the paper's code); multiply by
``dr^3`` for nm^3 units.

Algorithm: an exact matrix DFT evaluated directly on the geometry's q grid (a
zero-padded FFT cannot hit ``dq = 2 pi / 850 nm^-1`` from a 4.98 nm grid).
The density is real and the in-plane grid symmetric about the box centre, so
the cosine and sine transforms act only on the even and odd folds of the
density along x and y, and the four sign quadrants ``(+-qy, +-qx)`` of the
field are assembled from the same products; the curvature phase depends on
``|q|`` only. The cost is ``N^2 n H + 2 n N H^2`` real multiply-adds
(``n = (N + 1) // 2``, ``H = M // 2 + 1``), about 52 M at 64^3 -> 128^2,
a sixth of a plain complex matrix DFT, all in two pairs of large matmuls.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from msftnet.geometry import Geometry

__all__ = [
    "msft",
    "pmsft",
    "field",
    "intensity",
    "log_pattern",
    "simulate_pattern",
    "absorb",
    "field_of_absorbed",
    "PAPER_LOSS_EPS",
]

#: The constant added before the log in the paper's loss (its code uses
#: ``log(|E|^2 + 1e2)`` on the 64^3 grid).
PAPER_LOSS_EPS = 100.0

_HIGHEST = jax.lax.Precision.HIGHEST


@functools.lru_cache(maxsize=32)
def _constants(geometry: Geometry, dtype_name: str):
  """Folded DFT and phase matrices of the quadrant algorithm (numpy, cached)."""
  g = geometry
  n, m = g.n_voxels, g.detector_px
  n_half = (n + 1) // 2                                # coordinates >= 0
  q_pos = np.arange(m // 2 + 1) * float(g.q_step_per_nm)   # [H], q >= 0
  r_pos = g.in_plane_nm[n - n_half:]                   # [n_half], >= 0
  ph = np.outer(r_pos, q_pos)                          # [n_half, H]
  cos, sin = np.cos(ph), np.sin(ph)
  if n % 2:                                            # centre voxel is
    cos[0] *= 0.5                                      # counted twice by
  k = g.k_per_nm                                       # the even fold
  qsq = q_pos[:, None] ** 2 + q_pos[None, :] ** 2      # [H(qy), H(qx)]
  qz = np.where(qsq < k**2, k - np.sqrt(np.maximum(k**2 - qsq, 0.0)), 0.0)
  ph_z = g.depth_nm[:, None, None] * qz.T[None]        # [N(z), H(qx), H(qy)]
  dt = np.dtype(dtype_name)
  return (cos.astype(dt), sin.astype(dt), np.cos(ph_z).astype(dt),
          np.sin(ph_z).astype(dt), g.ewald_mask)


def absorb(density: jax.Array, geometry: Geometry, *,
           cumsum: str | None = None) -> jax.Array:
  """Attenuate a density along the beam: the effective density of the MSFT.

  Args:
    density: ``[..., N, N, N]`` float, (z, y, x), beam along +z entering at
      z index 0, values in [0, 1].
    geometry: the experiment; its absorption length and convention are used.
    cumsum: how the density is summed along the beam: ``"scan"`` (the
      default on CPU) or ``"blocks"`` (the default on accelerators); the
      same numbers up to float rounding, see :func:`_cumsum_z`.

  Returns:
    ``rho * exp(-mu dr cumsum_z(rho))`` (the cumulative sum includes the slice
    itself, as the paper's code), same shape and dtype.
  """
  if cumsum not in (None, "scan", "blocks"):
    raise ValueError(f"absorb: cumsum must be 'scan' or 'blocks' (or None for "
                     f"the backend's default), got {cumsum!r}.")
  mu = geometry.amplitude_attenuation_per_nm
  if mu == 0.0:
    return density
  depth = _cumsum_z(density, cumsum)
  return density * jnp.exp(-(mu * geometry.voxel_nm) * depth)


def _cumsum_z(x: jax.Array, method: str | None = None) -> jax.Array:
  """Inclusive cumulative sum over axis -3 of ``[..., N, N, N]``.

  ``method``: ``"scan"`` adds one plane per step of a ``lax.scan`` (``N^3``
  adds; the fastest on CPU, forward and gradient, see
  ``benchmarks/RESULTS.md``); ``"blocks"`` sums with lower-triangular
  matrices of ones in blocks of 16 slices (``16 N^3`` multiply-adds in a
  few large matmuls rather than ``N`` sequential steps, for accelerators).
  Default: ``"scan"`` on CPU, ``"blocks"`` elsewhere. Both are exact up to
  float rounding (XLA's own ``jnp.cumsum`` is slower than either on CPU).
  """
  if method is None:
    method = "scan" if jax.default_backend() == "cpu" else "blocks"
  if method == "scan":
    planes = jnp.moveaxis(x, -3, 0)

    def step(total, plane):
      total = total + plane
      return total, total

    _, out = jax.lax.scan(step, jnp.zeros_like(planes[0]), planes)
    return jnp.moveaxis(out, 0, -3)
  if method != "blocks":
    raise ValueError(f"_cumsum_z: method must be 'scan' or 'blocks', got {method!r}.")
  block = 16
  n = x.shape[-3]
  if n % block or n <= block:
    tri = jnp.asarray(np.tril(np.ones((n, n))), dtype=x.dtype)
    return jnp.einsum("zw,...wyx->...zyx", tri, x, precision=_HIGHEST)
  k = n // block
  xb = x.reshape(x.shape[:-3] + (k, block) + x.shape[-2:])
  tri = jnp.asarray(np.tril(np.ones((block, block))), dtype=x.dtype)
  inner = jnp.einsum("zw,...kwyx->...kzyx", tri, xb, precision=_HIGHEST)
  before = jnp.asarray(np.tril(np.ones((k, k)), -1), dtype=x.dtype)
  offset = jnp.einsum("kj,...jyx->...kyx", before, inner[..., -1, :, :],
                      precision=_HIGHEST)
  return (inner + offset[..., None, :, :]).reshape(x.shape)


def _check_density(density, geometry: Geometry) -> jax.Array:
  density = jnp.asarray(density)
  n = geometry.n_voxels
  if density.ndim < 3 or density.shape[-3:] != (n, n, n):
    raise ValueError(
        f"density must have shape [..., {n}, {n}, {n}] (z, y, x) to match "
        f"Geometry.n_voxels={n}, got {tuple(density.shape)}.")
  if not jnp.issubdtype(density.dtype, jnp.floating):
    density = density.astype(jnp.float32)
  elif density.dtype not in (jnp.float32, jnp.float64):
    density = density.astype(jnp.float32)
  return density


def _fold(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
  """Even and odd parts of ``x`` about the grid centre along ``axis``.

  Returns ``x(r) + x(-r)`` and ``x(r) - x(-r)`` for the ``(N + 1) // 2``
  coordinates ``r >= 0`` (ascending).
  """
  n = x.shape[axis]
  n_half = (n + 1) // 2
  pos = jax.lax.slice_in_dim(x, n - n_half, n, axis=axis)
  neg = jnp.flip(jax.lax.slice_in_dim(x, 0, n_half, axis=axis), axis=axis)
  return pos + neg, pos - neg


def field_of_absorbed(rho: jax.Array, geometry: Geometry) -> jax.Array:
  """The linear part of the MSFT: absorbed density -> complex field
  (``msft(rho) == field_of_absorbed(absorb(rho))``; no batching rule).

  ``rho [..., N, N, N]`` (float32/64, already attenuated by :func:`absorb`)
  -> complex ``[..., M, M]``.

  With ``C = cos(q r)``, ``S = sin(q r)`` for ``q, r >= 0`` and the even /
  odd folds ``+`` / ``-`` of the real density about the box centre:
  stage 1 (x): ``Ar = rho+ C``, ``Ai = -rho- S``; stage 2 (y):
  ``CA = C A+``, ``SA = S A-``; the four sign quadrants of
  ``F(+-qy, +-qx) = (C -+ iS)_y (Ar +- i Ai)`` then share the same products,
  and the curvature phase ``P(|q|)`` is applied in stage 3.
  """
  cos, sin, p_re, p_im, mask = _constants(geometry, rho.dtype.name)
  m = geometry.detector_px
  half = m // 2
  h = half + 1
  # Stage 1: contract x on the even / odd folds.  -> [..., z, y, 2H]
  even, odd = _fold(rho, -1)
  a_re = jnp.einsum("...zyx,xh->...zyh", even, cos, precision=_HIGHEST)
  a_im = -jnp.einsum("...zyx,xh->...zyh", odd, sin, precision=_HIGHEST)
  a = jnp.concatenate([a_re, a_im], axis=-1)
  # Stage 2: contract y.  -> [..., z, 2H(re|im, qx), H(qy)]
  even, odd = _fold(a, -2)
  ca = jnp.einsum("yj,...zyc->...zcj", cos, even, precision=_HIGHEST)
  sa = jnp.einsum("yj,...zyc->...zcj", sin, odd, precision=_HIGHEST)
  # Stage 3: curvature phase, summed over z.  Each -> [..., H(qx), H(qy)].
  def zsum(t, p):
    return (jnp.sum(t[..., :h, :] * p, axis=-3),
            jnp.sum(t[..., h:, :] * p, axis=-3))
  ca_r_pr, ca_i_pr = zsum(ca, p_re)
  sa_r_pr, sa_i_pr = zsum(sa, p_re)
  ca_r_pi, ca_i_pi = zsum(ca, p_im)
  sa_r_pi, sa_i_pi = zsum(sa, p_im)
  # F(sy qy, sx qx) = (CA_r + sy sx SA_i) + i (sx CA_i - sy SA_r); E = sum F P.
  def quadrant(sy, sx):
    re = (ca_r_pr + sy * sx * sa_i_pr) - (sx * ca_i_pi - sy * sa_r_pi)
    im = (ca_r_pi + sy * sx * sa_i_pi) + (sx * ca_i_pr - sy * sa_r_pr)
    return jnp.swapaxes(jax.lax.complex(re, im), -1, -2)   # -> (qy, qx)
  # Pixel m has q index j = m - M // 2: j < 0 uses the mirrored quadrant
  # rows / columns |j| = M // 2 ... 1, j >= 0 uses 0 ... M - 1 - M // 2.
  neg = slice(half, 0, -1)
  pos = slice(0, m - half)
  top = jnp.concatenate([quadrant(-1, -1)[..., neg, neg],
                         quadrant(-1, 1)[..., neg, pos]], axis=-1)
  bottom = jnp.concatenate([quadrant(1, -1)[..., pos, neg],
                            quadrant(1, 1)[..., pos, pos]], axis=-1)
  field = jnp.concatenate([top, bottom], axis=-2)
  return field * mask


def _default_chunk(batch_size: int) -> int:
  """Volumes per step when mapping over a batch.

  On CPU one volume at a time is fastest by far (its intermediates stay in
  cache; benchmarks/RESULTS.md, "MSFT throughput"); on accelerators the
  whole batch goes through at once.
  """
  return 1 if jax.default_backend() == "cpu" else batch_size


def _map_batch(f, xs, chunk: int):
  """``f`` over the leading axis of ``xs`` (an array or a tuple of arrays),
  ``chunk`` items per step."""
  b = jax.tree_util.tree_leaves(xs)[0].shape[0]
  if b == 1:              # XLA:CPU picks a slow dot for a size-1 batch axis
    return f(jax.tree_util.tree_map(lambda a: a[0], xs))[None]
  if chunk >= b:                    # f maps one item: batch it with vmap
    return jax.vmap(f)(xs)
  return jax.lax.map(f, xs, batch_size=None if chunk == 1 else chunk)


def _batched_like_a_batch(f):
  """``f(*args)`` (one item, or a batch on the leading axis of every
  argument) whose ``jax.vmap`` is the batched call: items mapped in
  :func:`_default_chunk` steps rather than XLA's default batching of every
  contraction (slower on CPU: benchmarks/RESULTS.md, "``jax.vmap`` of the
  MSFT")."""
  g = jax.custom_batching.custom_vmap(f)

  @g.def_vmap
  def _rule(axis_size, in_batched, *args):
    if not any(in_batched):
      return f(*args), False
    args = tuple(a if b else jnp.broadcast_to(a, (axis_size,) + a.shape)
                 for a, b in zip(args, in_batched))
    one = lambda xs: f(*xs)
    return _map_batch(one, args, _default_chunk(axis_size)), True

  return g


def _msft_one(rho: jax.Array, geometry: Geometry) -> jax.Array:
  """The MSFT of one volume ``[N, N, N]`` -> ``[M, M]``."""
  return field_of_absorbed(absorb(rho, geometry), geometry)


@functools.lru_cache(maxsize=32)
def _propagator(geometry: Geometry, padded: int, dtype_name: str) -> np.ndarray:
  """Angular-spectrum step over one voxel, relative to the carrier wave:
  ``exp(i (kz - k) dr)``, ``kz = sqrt(k^2 - kx^2 - ky^2)`` (imaginary for
  evanescent components, which then decay), on the ``[P, P]`` FFT grid."""
  k, dr = geometry.k_per_nm, geometry.voxel_nm
  kf = 2 * np.pi * np.fft.fftfreq(padded, dr)
  kz = np.sqrt(k**2 - kf[:, None] ** 2 - kf[None, :] ** 2 + 0j)
  return np.exp(1j * (kz - k) * dr).astype(dtype_name)


def _pmsft_sources(rho: jax.Array, geometry: Geometry, padding: int,
                   propagate: bool) -> jax.Array:
  """The propagation MSFT's slice sources ``rho[z] U_z`` (complex ``[N, N, N]``).

  ``U_z`` is the field envelope (relative to ``exp(i k z)``) inside slice
  ``z``: the field leaving slice ``z - 1`` is propagated over ``dr``
  (angular spectrum on a grid ``padding`` times wider than the box, so that
  light scattered sideways does not wrap around onto the particle), then
  multiplied by the slice's transmission ``exp(i k (n - 1) dr rho[z])`` =
  ``exp(-(mu + i k delta) dr rho[z])``. Without propagation the product of
  transmissions is the MSFT's attenuation (the slice itself included).
  """
  n = geometry.n_voxels
  cdt = jnp.complex128 if rho.dtype == jnp.float64 else jnp.complex64
  a = -complex(geometry.amplitude_attenuation_per_nm,
               geometry.phase_shift_per_nm) * geometry.voxel_nm
  p = padding * n
  off = (p - n) // 2
  prop = _propagator(geometry, p, np.dtype(cdt).name)

  def step(u, rz):
    if propagate:
      u = jnp.fft.ifft2(jnp.fft.fft2(u) * prop)
    inner = jax.lax.dynamic_slice(u, (off, off), (n, n)) * jnp.exp(a * rz)
    u = jax.lax.dynamic_update_slice(u, inner, (off, off))
    return u, inner * rz

  _, sources = jax.lax.scan(step, jnp.ones((p, p), cdt), rho)
  return sources


def _pmsft_one(rho: jax.Array, geometry: Geometry, padding: int,
               propagate: bool) -> jax.Array:
  """The propagation MSFT of one volume ``[N, N, N]`` -> ``[M, M]``."""
  src = _pmsft_sources(rho, geometry, padding, propagate)
  parts = field_of_absorbed(jnp.stack([jnp.real(src), jnp.imag(src)]),
                             geometry)                       # linear in src
  return parts[0] + 1j * parts[1]


@functools.lru_cache(maxsize=64)
def _operator(geometry: Geometry, model: str = "msft", padding: int = 2,
              propagate: bool = True):
  """One volume's forward model with a batching rule for it and its gradient.

  ``jax.custom_vjp`` around ``jax.custom_batching.custom_vmap`` (the order
  JAX requires): the forward map and its cotangent map each batch as the
  batched call does, so ``jax.vmap`` of a function of the MSFT, and of its
  gradient, runs the same per-volume programs as a batch passed directly.
  Forward-mode differentiation (``jax.jvp``) is not defined for it.
  """
  if model == "msft":
    forward = functools.partial(_msft_one, geometry=geometry)
  else:
    forward = functools.partial(_pmsft_one, geometry=geometry,
                                padding=padding, propagate=propagate)

  def cotangent(rho, g):
    return jax.vjp(forward, rho)[1](g)[0]

  fwd_mapped = _batched_like_a_batch(forward)
  bwd_mapped = _batched_like_a_batch(cotangent)
  op = jax.custom_vjp(fwd_mapped)
  op.defvjp(lambda rho: (fwd_mapped(rho), rho),
            lambda rho, g: (bwd_mapped(rho, g),))
  return op


def _apply(density, geometry: Geometry, chunk_size, name: str, op):
  """``op`` (one volume -> ``[M, M]``) over ``density [..., N, N, N]``."""
  rho = _check_density(density, geometry)
  batch = rho.shape[:-3]
  if not batch:
    return op(rho)
  n, m = geometry.n_voxels, geometry.detector_px
  flat = rho.reshape((-1, n, n, n))
  b = flat.shape[0]
  chunk = _default_chunk(b) if chunk_size is None else int(chunk_size)
  if chunk < 1:
    raise ValueError(f"{name}: chunk_size must be >= 1, got {chunk_size}.")
  out = _map_batch(op, flat, chunk)
  return out.reshape(batch + (m, m))


def msft(density, geometry: Geometry, *, chunk_size: int | None = None
         ) -> jax.Array:
  """Wide-angle scattering field of a voxel density (multi-slice FT).

  The paper's model: absorption (``geometry.amplitude_attenuation_per_nm``,
  i.e. the material's beta) is kept, refraction (delta) is dropped; see
  :func:`pmsft` for both. Pure and differentiable with respect to
  ``density``; jit it at the call site with ``geometry`` static, e.g.
  ``jax.jit(msft, static_argnums=1)``. Leading batch dimensions are mapped;
  ``jax.vmap`` of this function (and of its gradient) runs the same
  per-item programs as passing the batch directly. Reverse-mode
  differentiable (``jax.grad``, ``jax.vjp``); forward-mode (``jax.jvp``) is
  not supported.

  Args:
    density: ``[..., N, N, N]`` float32 (or float64 with x64), (z, y, x),
      beam along +z entering at z index 0, values in [0, 1].
    geometry: a :class:`Geometry` with ``n_voxels == N``.
    chunk_size: with batch dimensions, the number of volumes evaluated per
      step (``jax.lax.map``); bounds memory, e.g. at 192^3. Default: 1 on CPU
      (fastest there), the whole batch on accelerators.

  Returns:
    ``[..., M, M]`` complex64 (complex128 for float64 input); rows qy,
    columns qx, pixel m at ``q = (m - M // 2) dq``; zero outside the Ewald
    sphere.
  """
  return _apply(density, geometry, chunk_size, "msft", _operator(geometry))


def pmsft(density, geometry: Geometry, *, chunk_size: int | None = None,
          padding: int = 2, propagate: bool = True) -> jax.Array:
  """Propagation multi-slice Fourier transform: refraction and absorption.

  The incident plane wave is propagated slice by slice through the
  particle's complex index ``n = 1 - delta + i beta``
  (``geometry.refractive_index``): each slice multiplies the field envelope
  by ``exp(i k (n - 1) dr rho[z])`` and the angular-spectrum propagator
  carries it over one voxel to the next slice (diffraction inside the
  particle, refraction, forward multiple scattering). Slice ``z`` then
  radiates ``rho[z] U_z`` (its density times the local field ``U_z``), and
  the slices are summed on the detector's q grid with the MSFT's wide-angle
  phase ``exp(i qz z dr)`` (the same exact DFT as :func:`msft`). The
  scattering strength ``k^2 (n^2 - 1)`` of a homogeneous particle is a
  constant factor and is left out, so that the result is in the MSFT's
  units (a voxel sum).

  Limits: with ``propagate=False`` the field is the projection
  approximation, and with ``delta = 0`` that is exactly :func:`msft`; with
  ``delta = beta = 0`` the field is the Born (kinematic) sphere pattern on
  the Ewald sphere. Not modelled: backscattering (waves travelling against
  the beam), the polarisation factor (the model is scalar).

  Same contract as :func:`msft` (shapes, batching, ``jax.vmap``,
  reverse-mode gradients, no ``jax.jvp``).

  Args:
    density: ``[..., N, N, N]`` float32/64, (z, y, x), beam along +z.
    geometry: the experiment; its :attr:`Geometry.refractive_index` is used
      (without a material: the paper's absorption, delta = 0).
    chunk_size: as for :func:`msft`.
    padding: the propagation grid is ``padding * N`` pixels wide (>= 1);
      2 keeps light scattered sideways from wrapping onto the particle.
    propagate: False drops the propagator (projection approximation).

  Returns:
    ``[..., M, M]`` complex64 (complex128 for float64 input).
  """
  if isinstance(padding, bool) or not isinstance(padding, int) or padding < 1:
    raise ValueError(f"pmsft: padding must be an integer >= 1, got {padding!r}.")
  op = _operator(geometry, "pmsft", padding, bool(propagate))
  return _apply(density, geometry, chunk_size, "pmsft", op)


def field(density, geometry: Geometry, *, chunk_size: int | None = None
          ) -> jax.Array:
  """The scattered field of ``geometry.forward_model`` (:func:`msft` or
  :func:`pmsft` with its defaults): ``[..., N, N, N]`` -> ``[..., M, M]``."""
  if geometry.forward_model == "pmsft":
    return pmsft(density, geometry, chunk_size=chunk_size)
  return msft(density, geometry, chunk_size=chunk_size)


def intensity(density, geometry: Geometry, *, chunk_size: int | None = None
              ) -> jax.Array:
  """Scattered intensity ``|E|^2`` of the geometry's forward model
  (:func:`field`): ``[..., N, N, N]`` -> ``[..., M, M]`` float."""
  e = field(density, geometry, chunk_size=chunk_size)
  return jnp.real(e) ** 2 + jnp.imag(e) ** 2


def log_pattern(intensity_, eps=PAPER_LOSS_EPS, *, normalize: bool = True
                ) -> jax.Array:
  """The pattern the network sees: ``log(I + eps)``, min-max normalised.

  Args:
    intensity_: ``[..., M, M]`` non-negative intensity (voxel-sum units).
    eps: constant added before the log, scalar or broadcastable to
      ``[..., 1, 1]``; the paper's loss uses 100 at 64^3, its stored patterns
      a random dark offset per sample.
    normalize: scale each ``[M, M]`` pattern to [0, 1] (a constant pattern
      maps to zeros).

  Returns:
    ``[..., M, M]`` float, in [0, 1] when normalised.
  """
  logs = jnp.log(intensity_ + jnp.asarray(eps, dtype=intensity_.dtype))
  if not normalize:
    return logs
  lo = jnp.min(logs, axis=(-2, -1), keepdims=True)
  hi = jnp.max(logs, axis=(-2, -1), keepdims=True)
  span = hi - lo
  safe = jnp.where(span > 0, span, 1.0)
  return jnp.where(span > 0, (logs - lo) / safe, 0.0)


def simulate_pattern(density, geometry: Geometry, eps=None, *,
                     chunk_size: int | None = None) -> jax.Array:
  """Density ``[..., N, N, N]`` -> normalised log pattern ``[..., M, M]`` in
  [0, 1] (``eps`` default: ``geometry.loss_eps``, 100 on the paper's grid)."""
  eps = geometry.loss_eps if eps is None else eps
  return log_pattern(intensity(density, geometry, chunk_size=chunk_size), eps)
