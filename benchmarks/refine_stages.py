r"""Where a reconstruction's time goes: each stage of the default pipeline.

  python -m benchmarks.refine_stages [--repeats=3] [--refine=FIELD=VALUE,...]
      [--json_out=FILE]

One simulated pattern of a truncated test solid (data seed 4321, as
``benchmarks.reconstruct_latency``) with a central-hole mask, through the
stages of ``msftnet.reconstruct.reconstruct`` at one centre, each timed on
its own with its result blocked on (median of ``--repeats`` warm calls,
compilation apart): the centre search, the shape network, the network and
its losses, the starts (sphere scan), the coarse stage (every start), the
fine stage (the ``keep`` best), the candidates' losses, the trust signals;
then the whole ``reconstruct`` call for comparison (which may also retry
at other centres when its confidence is low). One JSON line per stage.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import centre
from msftnet import data as data_lib
from msftnet import metrics
from msftnet import polytope as convex
from msftnet import pretrained
from msftnet import reconstruct as recon
from msftnet import shape_net
from msftnet.launch.refine_flags import parse_refine_config
from msftnet.refine import measurement as meas
from msftnet.refine import polytope as poly
from msftnet.refine import trust
from msftnet.refine import voxels

_REPEATS = flags.DEFINE_integer("repeats", 3, "Warm calls per stage.")
_REFINE = flags.DEFINE_string("refine", "", "RefineConfig fields, "
                              "FIELD=VALUE,... (the polytope method).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def _timed(fn, repeats: int) -> tuple[float, float, object]:
  """``(first call s, median warm s, result)`` of ``fn`` (blocked on)."""
  t = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return first, float(np.median(times)), out


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  if _REPEATS.value < 1:
    raise app.UsageError(f"--repeats must be >= 1, got {_REPEATS.value}.")
  config = parse_refine_config(_REFINE.value)
  if config.method != "polytope" or config.steps == 0:
    raise app.UsageError("--refine: the stages are those of the polytope "
                         "refinement with steps > 0.")
  model = pretrained.load_model(None)
  shapes = shape_net.load(None)
  g = model.geometry
  m = g.detector_px
  yy, xx = np.mgrid[:m, :m] - m // 2
  valid = (yy**2 + xx**2) >= 8**2
  cfg = data_lib.DataConfig(n_samples=64, seed=4321, test_set=True)
  sample = data_lib.simulate_batch(cfg, [data_lib.sample_params(cfg, 0)], [0])
  pattern = np.where(valid, np.asarray(sample["pattern"][0]), 0.0).astype(
      np.float32)
  support = voxels.support_mask(g.n_voxels, config.support_radius)
  reps = _REPEATS.value
  report = Report()
  total = 0.0

  def stage(name, fn):
    nonlocal total
    first, sec, out = _timed(fn, reps)
    total += sec
    report.add({"stage": name, "seconds": round(sec, 4),
                "first_call_s": round(first, 2),
                "backend": jax.default_backend(), "refine": _REFINE.value})
    return out

  shift = stage("centre search", lambda: centre.find_centres(
      pattern[None], valid[None], max_shift=config.centre_search))[0]
  p_c, v_c = centre.shift_pattern(pattern, valid, tuple(int(s) for s in shift))
  p_c = p_c.astype(np.float32)
  hint = stage("shape network", lambda: shape_net.predict(
      p_c[None], v_c[None], shapes))[0]
  net = stage("network and its losses", lambda: (lambda n: (n, meas.batch_losses(
      n, jnp.asarray(p_c)[None], jnp.asarray(v_c)[None], g,
      config.max_dark)))(model(p_c[None]) * support))[0][0]
  normals, offsets, _ = stage("starts (sphere scan, hull)",
                              lambda: poly.polytope_starts(
                                  net, p_c, v_c, g, config,
                                  hint.radius_nm / g.box_nm))
  coarse, crop, crop_valid = meas.coarse_problem(p_c, v_c, g)
  pc, loss_c, _ = stage(
      f"coarse stage ({len(offsets)} starts, {config.coarse_steps} steps, "
      f"{coarse.n_voxels}^3)",
      lambda: poly.refine_polytopes(
          jnp.asarray(normals), jnp.asarray(offsets), jnp.asarray(crop),
          jnp.asarray(crop_valid), geometry=coarse,
          steps=config.coarse_steps, max_dark=config.max_dark))
  top = np.argsort(np.asarray(loss_c), kind="stable")[:config.keep]
  p, _, _ = stage(
      f"fine stage ({config.keep} kept, {config.steps} steps, "
      f"{g.n_voxels}^3)",
      lambda: poly.refine_polytopes(
          pc["n"][top], pc["h"][top], jnp.asarray(p_c), jnp.asarray(v_c),
          geometry=g, steps=config.steps, max_dark=config.max_dark))
  dens = np.asarray(convex.polytope_density(p["n"], p["h"], g.n_voxels))
  stage("candidates' losses", lambda: [meas.pattern_losses(
      d, p_c, v_c, g, config.max_dark) for d in dens])
  stage("trust signals (with the candidates' agreement)", lambda: (
      meas.affine_objective(jnp.asarray(dens[:1]), jnp.asarray(p_c)[None],
                            jnp.asarray(v_c)[None], g, config.max_dark),
      trust.signals(dens[0], p_c, v_c, g, objective=0.01, dark_level=-3.0,
                    masked=0.01, network_masked=0.01,
                    agreement=metrics.aligned_iou(dens[0], dens[1]))))
  report.add({"stage": "sum of the stages", "seconds": round(total, 4)})
  first, sec, out = _timed(lambda: recon.reconstruct(
      pattern, valid, model=model, config=config, shape_model=shapes).density,
      reps)
  report.add({"stage": "reconstruct (whole call)", "seconds": round(sec, 4),
              "first_call_s": round(first, 2)})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
