r"""MSFT throughput: msftnet.msft against two baselines in the same run.

  python -m benchmarks.msft_throughput [--sizes=64,192] [--batches=1,8,32]
      [--min_seconds=2] [--json_out=FILE]

Prints one JSON line per (implementation, N, batch, mode):

* ``msftnet``: ``msftnet.intensity`` (folded matrix DFT), jit-compiled;
* ``msftnet_vmap``: ``jax.vmap`` of it (its batching rule), and
  ``msftnet_vmap_default_rule``: ``jax.vmap`` of the same computation with
  JAX's default batching (not in the default ``--impls``);
* ``msftnet_cumsum_scan`` and ``msftnet_cumsum_blocks``: the MSFT of each
  volume (``lax.map``, JAX's own gradient) with the absorption's sum along
  the beam done as a scan (msftnet's CPU default) or as blocked
  triangular matmuls (its accelerator default), side by side (not in the
  default ``--impls``);
* ``pmsft``: ``msftnet.intensity`` with the propagation MSFT
  (``forward_model="pmsft"``, silver's Henke index at 13.5 nm; not in the
  default ``--impls``), the cost of refraction side by side with ``msftnet``;
* ``jnp_einsum``: a naive complex matrix DFT with ``jnp.einsum`` (same model,
  no symmetry folding), jit-compiled;
* ``pymsft``: pyMSFT's MSFT (numpy and FFTW, its own FFT q grid), run in
  the interpreter ``--pymsft_python`` (it needs its own environment:
  Python >= 3.12 by its metadata, scipy < 1.17), forward only;
* ``numpy_fft``: plain numpy, one zero-padded 2D FFT per slice as in the
  paper's code (pads N=64 to 170 and N=192 to 512, so its q grid is the
  nearest FFT grid, not exactly ``dq``), forward only.

Modes: ``forward`` (density -> |E|^2) and ``forward+grad`` (value and gradient
of a log-pattern loss); ``rel_err`` is the forward pass's relative L2
distance from a numpy float64 DFT of the first volume (the MSFT's model;
not reported for ``pmsft``, a different model). ``patterns_per_s`` is the batch size over the median
wall time of repeated calls after compilation; ``peak_bytes`` is XLA's
buffer estimate for the compiled call (arguments + outputs + temporaries) for
JAX, and tracemalloc's peak for numpy. Runtime: ~5 min with the defaults on
2 CPU cores.
"""

from __future__ import annotations

import importlib
import subprocess
import time
import tracemalloc

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import Geometry
from msftnet import Material
from msftnet import intensity

# The module (the package's attribute ``msft`` is the function).
msft_module = importlib.import_module("msftnet.msft")

_SIZES = flags.DEFINE_list("sizes", ["64", "192"], "Grid sizes N.")
_BATCHES = flags.DEFINE_list("batches", ["1", "8", "32"], "Batch sizes.")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 2.0,
                                  "Time each case for at least this long.")
_IMPLS = flags.DEFINE_list("impls", ["msftnet", "jnp_einsum", "numpy_fft"],
                           "Implementations to run.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")
_PYMSFT_PYTHON = flags.DEFINE_string(
    "pymsft_python", None, "A Python interpreter with pyMSFT installed: adds "
    "the impl 'pymsft' (run in that interpreter, in the same run).")

# pyMSFT's MSFT (numpy + FFTW, CPU) on the same volumes: N^3 -> M^2 with its
# own FFT q grid, forward only; prints seconds per pattern (median of loops).
_PYMSFT_SCRIPT = """
import os, sys, time
os.environ["pyMSFT_FORCE_CPU"] = "True"
import numpy as np
from pyMSFT.simulation.simulation import MSFTSimulation
n, m, b, box, lam, min_s = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                            float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
sim = MSFTSimulation(npix_fft=m, npix_real=n, box_size=box, wavelength=lam,
                     pool_size=os.cpu_count())
rng = np.random.default_rng(0)
vols = [(rng.random((n, n, n)) > 0.7) * 0.01j for _ in range(b)]
sim.get_diffraction_image(vols[0])
times, total = [], 0.0
while total < min_s or len(times) < 3:
  t = time.perf_counter()
  for v in vols:
    sim.get_diffraction_image(v)
  times.append(time.perf_counter() - t)
  total += times[-1]
print(float(np.median(times)) / b)
"""

_FFT_SIZE = {64: 170, 192: 512}


def naive_einsum_intensity(rho, g: Geometry):
  """Baseline: the same model as a plain complex matrix DFT with einsum."""
  r = jnp.asarray(g.in_plane_nm, jnp.float32)
  q = jnp.asarray(g.q_axis, jnp.float32)
  f = jnp.exp(-1j * jnp.outer(q, r)).astype(jnp.complex64)            # [M, N]
  phase = jnp.exp(1j * jnp.asarray(g.qz, jnp.float32)[None] *
                  jnp.asarray(g.depth_nm, jnp.float32)[:, None, None])
  mu = g.amplitude_attenuation_per_nm * g.voxel_nm
  eff = rho * jnp.exp(-mu * jnp.cumsum(rho, axis=-3))
  a = jnp.einsum("...zyx,px->...zyp", eff.astype(jnp.complex64), f)
  b = jnp.einsum("qy,...zyp->...zqp", f, a)
  field = jnp.sum(b * phase, axis=-3) * jnp.asarray(g.ewald_mask)
  return jnp.abs(field) ** 2


def numpy_fft_intensity(rho: np.ndarray, g: Geometry) -> np.ndarray:
  """Baseline: per-slice zero-padded FFT in plain numpy (paper's approach)."""
  n, m = g.n_voxels, g.detector_px
  p = _FFT_SIZE.get(n, int(round(2 * np.pi / (g.q_step_per_nm * g.voxel_nm))))
  dr = g.voxel_nm
  q = (np.arange(p) - p // 2) * (2 * np.pi / (p * dr))
  qy, qx = np.meshgrid(q, q, indexing="ij")
  k = g.k_per_nm
  inside = qx**2 + qy**2 < k**2
  qz = np.where(inside, k - np.sqrt(np.maximum(k**2 - qx**2 - qy**2, 0)), 0)
  lo = p // 2 - m // 2
  qz = qz[lo:lo + m, lo:lo + m]
  phase = np.exp(1j * qz[None] * (np.arange(n) * dr)[:, None, None])
  out = []
  for vol in rho.reshape((-1, n, n, n)):
    eff = vol * np.exp(-g.amplitude_attenuation_per_nm * dr *
                       np.cumsum(vol, axis=0))
    pad = np.zeros((n, p, p), np.float32)
    o = (p - n) // 2
    pad[:, o:o + n, o:o + n] = eff
    slices = np.fft.fftshift(np.fft.fft2(pad), axes=(1, 2))
    field = np.sum(slices[:, lo:lo + m, lo:lo + m] * phase, axis=0)
    out.append(np.abs(field * inside[lo:lo + m, lo:lo + m]) ** 2)
  return np.stack(out).reshape(rho.shape[:-3] + (m, m))


def _vmapped(d, g):
  """``jax.vmap`` of :func:`msftnet.intensity` (its batching rule)."""
  return jax.vmap(lambda v: intensity(v, g))(d)


def _vmapped_without_rule(d, g):
  """``jax.vmap`` of the same computation with XLA's default batching (what
  ``jax.vmap(msftnet.intensity)`` did before its batching rule)."""
  def one(v):
    field = msft_module.field_of_absorbed(msft_module.absorb(v, g), g)
    return jnp.real(field) ** 2 + jnp.imag(field) ** 2
  return jax.vmap(one)(d)


def _cumsum_variant(method):
  def run(d, g):
    def one(v):
      field = msft_module.field_of_absorbed(
          msft_module.absorb(v, g, cumsum=method), g)
      return jnp.real(field) ** 2 + jnp.imag(field) ** 2
    return jax.lax.map(one, d)
  return run


def _pmsft(d, g):
  """:func:`msftnet.intensity` with the propagation MSFT (silver, 13.5 nm)."""
  return intensity(d, g.replace(forward_model="pmsft",
                                material=Material(0.1097, 0.0794)))


def reference_intensity(vol: np.ndarray, g: Geometry) -> np.ndarray:
  """One volume's |E|^2 in numpy float64 (plain complex DFT): the accuracy
  reference of every implementation's forward pass (``rel_err``)."""
  vol = vol.astype(np.float64)
  eff = vol * np.exp(-g.amplitude_attenuation_per_nm * g.voxel_nm *
                     np.cumsum(vol, axis=0))
  f = np.exp(-1j * np.outer(g.q_axis, g.in_plane_nm))          # [M, N]
  a = np.tensordot(eff, f, axes=([2], [1]))                    # z, y, qx
  b = np.tensordot(f, a, axes=([1], [1]))                      # qy, z, qx
  phase = np.exp(1j * g.qz[:, None, :] * g.depth_nm[None, :, None])
  return np.abs(np.sum(b * phase, axis=1) * g.ewald_mask) ** 2


_JAX_IMPLS = {"msftnet": intensity, "msftnet_vmap": _vmapped,
              "pmsft": _pmsft,
              "msftnet_cumsum_scan": _cumsum_variant("scan"),
              "msftnet_cumsum_blocks": _cumsum_variant("blocks"),
              "msftnet_vmap_default_rule": _vmapped_without_rule,
              "jnp_einsum": naive_einsum_intensity}


def _time(fn, min_seconds):
  fn()                                          # compile / warm up
  times, total = [], 0.0
  while total < min_seconds or len(times) < 3:
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    times.append(dt)
    total += dt
    if len(times) >= 50:
      break
  return float(np.median(times)), len(times)


def _jax_case(fn, g, rho, mode):
  if mode == "forward":
    f = jax.jit(lambda d: fn(d, g))
  else:
    def loss(d):
      return jnp.mean(jnp.log(fn(d, g) + 100.0))
    f = jax.jit(jax.value_and_grad(loss))
  compiled = f.lower(rho).compile()
  mem = compiled.memory_analysis()
  peak = None
  if mem is not None:
    peak = int(mem.argument_size_in_bytes + mem.output_size_in_bytes +
               mem.temp_size_in_bytes)
  return (lambda: jax.block_until_ready(compiled(rho))), peak


def _pymsft_case(report, g: Geometry, b: int) -> None:
  """Time pyMSFT in ``--pymsft_python`` (a subprocess) on ``b`` volumes."""
  if not _PYMSFT_PYTHON.value:
    raise app.UsageError("--impls=pymsft needs --pymsft_python=INTERPRETER.")
  res = subprocess.run(
      [_PYMSFT_PYTHON.value, "-c", _PYMSFT_SCRIPT, str(g.n_voxels),
       str(g.detector_px), str(b), str(g.box_nm), str(g.wavelength_nm),
       str(_MIN_SECONDS.value)], capture_output=True, text=True, check=True)
  sec = float(res.stdout.split()[-1])
  report.add({"impl": "pymsft", "n_voxels": g.n_voxels,
              "detector_px": g.detector_px, "batch": b, "mode": "forward",
              "seconds_per_call": round(sec * b, 5),
              "patterns_per_s": round(1 / sec, 2), "peak_bytes": None,
              "rel_err": None, "reps": None, "backend": "cpu (pyMSFT)",
              "devices": None})


def main(argv):
  del argv
  report = Report()
  rng = np.random.default_rng(0)
  for n in map(int, _SIZES.value):
    g = Geometry(n_voxels=n)
    for b in map(int, _BATCHES.value):
      rho_np = (rng.random((b, n, n, n)) > 0.7).astype(np.float32)
      rho = jnp.asarray(rho_np)
      ref = reference_intensity(rho_np[0], g)
      for impl in _IMPLS.value:
        if impl == "pymsft":
          _pymsft_case(report, g, b)
          continue
        modes = ["forward"] if impl == "numpy_fft" else ["forward", "forward+grad"]
        for mode in modes:
          err = None
          if impl == "numpy_fft":
            if n == 192 and b > 8:
              continue                          # minutes per call; skip
            run = lambda: numpy_fft_intensity(rho_np, g)
            tracemalloc.start()
            run()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
          else:
            fn = _JAX_IMPLS[impl]
            run, peak = _jax_case(fn, g, rho, mode)
            if mode == "forward" and impl != "pmsft":
              out = np.asarray(run()[0], np.float64)
              err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
          sec, reps = _time(run, _MIN_SECONDS.value)
          rec = {"impl": impl, "n_voxels": n, "detector_px": g.detector_px,
                 "batch": b, "mode": mode, "seconds_per_call": round(sec, 5),
                 "patterns_per_s": round(b / sec, 2), "peak_bytes": peak,
                 "rel_err": None if err is None else float(f"{err:.2e}"),
                 "reps": reps, "backend": jax.default_backend(),
                 "devices": jax.device_count()}
          report.add(rec)
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
