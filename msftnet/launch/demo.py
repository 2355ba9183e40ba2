r"""The main job, end to end on a CPU: simulate a measurement, reconstruct it.

  python -m experiments.demo [--out=demo] [--seed=3] [--refine_steps=50]
      [--checkpoint=DIR]

1. samples a truncated solid from the paper's test-set distribution
   (``msftnet.solids.sample_solid(seed, test_set=True)``) and rasterises it
   at 64^3;
2. simulates its wide-angle pattern with the MSFT (318.75 nm box, 13.5 nm)
   and applies the paper's simulated-experiment filter (shot noise, shifts,
   blind spot, saturation, central hole, crop), which also gives the valid
   mask;
3. reconstructs it (``msftnet.reconstruct``): centre estimate, the bundled
   network, then coarse-to-fine refinement of convex polytopes with free
   planes from several starts (the lowest loss wins);
4. writes ``OUT/demo.png`` (input with mask outline, reconstruction and
   truth as depth maps and three views, simulated pattern),
   ``OUT/demo.json`` (pattern losses of network and refinement, IoU and
   aligned IoU against the truth, class and parameters of the solid) and
   ``OUT/demo_density.npy``.

Runtime: see the README (it is measured there, imports and compilation
included).
"""

from __future__ import annotations

import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from msftnet import augment
from msftnet import data as data_lib
from msftnet import losses
from msftnet import metrics
from msftnet import pretrained
from msftnet import reconstruct as recon
from msftnet import report

_OUT = flags.DEFINE_string("out", "demo", "Output directory.")
_SEED = flags.DEFINE_integer("seed", 3, "Which solid (any integer).")
_STEPS = flags.DEFINE_integer("refine_steps", recon.RefineConfig.steps,
                              "Refinement steps.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Model directory (default: bundled).")


def run(out_dir: str, seed: int, steps: int, checkpoint=None,
        config: recon.RefineConfig = recon.RefineConfig()) -> dict:
  t0 = time.perf_counter()
  model = pretrained.load_model(checkpoint)
  cfg = data_lib.DataConfig(n_samples=1000, seed=seed, test_set=True)
  solid = data_lib.sample_params(cfg, 0)
  batch = data_lib.simulate_batch(cfg, [solid], [0])
  pattern, valid = augment.apply_filter(
      "simulated_experiment", jax.random.key(seed), batch["target"][0])
  pattern, valid = np.asarray(pattern), np.asarray(valid)
  print(f"[{time.perf_counter() - t0:5.1f} s] simulated a truncated "
        f"{solid.polyhedron} (size {solid.size:.2f}, stretch "
        f"{solid.stretch:.2f}, cut {solid.cut:.2f}); "
        f"{valid.mean():.0%} of the pixels valid", flush=True)
  out = recon.reconstruct(pattern, valid, model=model, refine_steps=steps,
                          config=config)
  print(f"[{time.perf_counter() - t0:5.1f} s] reconstructed: pattern loss "
        f"{out.network_paper_loss:.2e} (network) -> {out.paper_loss_after:.2e}"
        f" (refined, {steps} steps)", flush=True)
  truth = batch["density"][0]
  g = cfg.geometry
  net = out.initial_density
  clean = batch["loss_target"][:1]
  scatter = lambda v: float(losses.scatter_loss(v[None], g,
                                                target_pattern=clean))
  record = {
      "solid": solid.to_row(),
      "valid_fraction": float(valid.mean()),
      "model": model.path,
      "refine_steps": steps,
      "method": config.method,
      "start": str(out.start_name),
      "centre_shift_px": [int(x) for x in out.centre_shift],
      "loss_network": float(out.network_paper_loss),
      "loss_refined": float(out.paper_loss_after),
      "scatter_loss_vs_clean_truth_network": scatter(net),
      "scatter_loss_vs_clean_truth_refined": scatter(out.density),
      "iou_network": metrics.iou(net, truth),
      "iou_refined": metrics.iou(out.density, truth),
      "aligned_iou_network": metrics.aligned_iou(net, truth),
      "aligned_iou_refined": metrics.aligned_iou(out.density, truth),
      "volume_true_nm3": float(truth.sum() * g.voxel_nm**3),
      "volume_refined_nm3": float(out.density.sum() * g.voxel_nm**3),
  }
  title = (f"demo: truncated {solid.polyhedron}; pattern loss "
           f"{record['loss_network']:.2e} (network) -> "
           f"{record['loss_refined']:.2e} (refined); aligned IoU "
           f"{record['aligned_iou_network']:.2f} -> "
           f"{record['aligned_iou_refined']:.2f}")
  record["seconds"] = time.perf_counter() - t0
  paths = report.write_result(out_dir, "demo", density=out.density,
                              pattern=pattern, valid=valid,
                              simulated=out.pattern, metrics=record,
                              title=title, truth=truth, geometry=g)
  print(f"[{time.perf_counter() - t0:5.1f} s] {title}")
  print("wrote " + ", ".join(paths))
  return record


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  try:
    report.check_out_dir(_OUT.value)
    run(_OUT.value, _SEED.value, _STEPS.value, _CHECKPOINT.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
