r"""Reconstruct particles from single patterns: network + MSFT refinement.

  python -m experiments.reconstruct --out=DIR PATTERN [PATTERN ...]
      [--checkpoint=DIR] [--method=polytope|voxels] [--refine_steps=N]
      [--coarse_steps=N] [--refine=FIELD=VALUE,...]
      [--input_scale=auto|counts|log] [--experimental]
      [--mask=FILE] [--detector_distance_mm=D --pixel_um=P
      [--beam_centre=ROW,COL] [--wavelength_nm=L]] [--mesh] [--nofigures]
      [--batch=32]
      [--overwrite] [--process_id=I --num_processes=P]
      [--forward_model=msft|pmsft] [--material=henke:Ag]

Inputs (``msftnet.measured``): PNG (RGB channel 1; 8/16-bit grayscale),
``.npy``, HDF5/CXI (``entry_1/data_1/data`` or
``entry_1/instrument_1/detector_1/data``, one frame or a run ``[N, H, W]``
whose frames are written as ``STEM_frameK``; the CXI mask beside the data).
A flat detector (distance and pixel size from the CXI file or
``--detector_distance_mm``/``--pixel_um``, beam centre ``--beam_centre``) is
mapped onto the model's q grid; a ``[128, 128]`` pattern without them is
taken to be on the paper's grid. ``--experimental``: undo the colour map of
the paper's experimental images and take zero pixels as invalid. ``--mask``:
a PNG/npy whose non-zero pixels are valid (applies to every input). ``--checkpoint``: a model directory
(``msftnet/models/default`` by default) or a training work directory.
``--forward_model``/``--material``: the physics the refinement fits with
(default: the model's, i.e. the physics it was trained with; for the bundled
model the paper's MSFT, absorption only; ``STEM.json`` records it).

For each input ``STEM`` writes ``DIR/STEM_density.npy`` (float32 [64]^3,
(z, y, x), beam +z, 318.75 nm box), ``DIR/STEM.json`` (losses before/after
refinement, masked and in the paper's protocol), ``DIR/STEM.png`` (input with
mask outline, depth map, three views, simulated pattern; not with
``--nofigures``) and with ``--mesh`` ``DIR/STEM.obj``. An input that cannot be used gets one line on stderr and
the others are still processed; the exit status is 1 if any failed.
A rerun skips inputs whose ``STEM.json`` exists (written last, so it marks a
finished input; ``--overwrite`` redoes them); ``--process_id/--num_processes``
split the inputs between processes writing into one folder (process ``I``
takes inputs ``i % P == I``; e.g. one per GPU or SLURM task).
``STEM.json`` also lists the ranked candidates (start, objective) and the
estimated offset of the pattern centre; ``--mesh`` meshes the best
candidate. Runtimes: benchmarks/RESULTS.md and docs/results.md.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from experiments import inputs

from msftnet import metrics as metrics_lib
from msftnet import pretrained
from msftnet import reconstruct as recon
from msftnet import report

_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Model directory or training work directory "
    "(default: the bundled model).")
_STEPS = flags.DEFINE_integer("refine_steps", recon.RefineConfig.steps,
                              "Refinement steps (0: the network alone).")
_START = flags.DEFINE_enum("start", "network", ["auto", "network", "sphere"],
                           "Voxel refinement: start (msftnet.reconstruct).")
_METHOD = flags.DEFINE_enum("method", recon.RefineConfig.method,
                            ["polytope", "voxels"],
                            "Refinement: convex polytopes or free voxels.")
_COARSE = flags.DEFINE_integer("coarse_steps", recon.RefineConfig.coarse_steps,
                               "Polytope refinement: coarse-stage steps.")
_REFINE = flags.DEFINE_string(
    "refine", "", "Further refinement settings, FIELD=VALUE,... of "
    "msftnet.reconstruct.RefineConfig (e.g. planes=32,keep=3).")
_MESH = flags.DEFINE_bool("mesh", False, "Also write DIR/STEM.obj.")
_FIGURES = flags.DEFINE_bool("figures", True,
                             "Write DIR/STEM.png (--nofigures for long runs).")
_BATCH = flags.DEFINE_integer(
    "batch", 32, "Patterns per call (the network alone runs them together; "
    "a refinement takes them one by one).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Redo inputs whose STEM.json exists (default: a "
    "rerun skips them, so an interrupted run resumes).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", 0, "This process's index: it takes inputs i with "
    "i % num_processes == process_id (several processes, one --out).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1,
                                      "Processes sharing the inputs.")


def main(argv):
  logging.set_verbosity(logging.WARNING)
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give at least one PATTERN file.")
  if _STEPS.value < 0 or _BATCH.value < 1:
    raise app.UsageError("--refine_steps must be >= 0 and --batch >= 1.")
  try:
    report.check_out_dir(_OUT.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  try:
    model = pretrained.load_model(_CHECKPOINT.value)
  except ValueError as e:
    print(f"error: --checkpoint: {e}", file=sys.stderr)
    sys.exit(1)
  good, bad = inputs.load(paths)
  report.print_errors(bad)
  try:
    good, skipped = inputs.select_work(
        good, _OUT.value, process_id=_PROCESS_ID.value,
        num_processes=_NUM_PROCESSES.value, overwrite=_OVERWRITE.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if skipped:
    print(f"skipping {len(skipped)} finished inputs (their STEM.json exists; "
          "--overwrite redoes them)", flush=True)
  try:
    geometry = inputs.geometry(model.geometry)
  except ValueError as e:
    print(f"error: --material: {e}", file=sys.stderr)
    sys.exit(1)
  voxel_nm3 = geometry.voxel_nm ** 3
  try:
    config = recon.parse_refine_config(_REFINE.value, recon.RefineConfig(
        steps=_STEPS.value, start=_START.value, method=_METHOD.value,
        coarse_steps=_COARSE.value))
  except ValueError as e:
    print(f"error: --refine: {e}", file=sys.stderr)
    sys.exit(1)
  t0 = time.perf_counter()
  done = 0
  for i in range(0, len(good), _BATCH.value):
    chunk = good[i:i + _BATCH.value]
    pats = np.stack([c[2] for c in chunk])
    vals = np.stack([c[3] for c in chunk])
    t = time.perf_counter()
    out = recon.reconstruct(pats, vals, model=model, refine_steps=_STEPS.value,
                            config=config, geometry=geometry)
    seconds = (time.perf_counter() - t) / len(chunk)
    for j, (stem, path, pattern, valid, scale_info) in enumerate(chunk):
      metrics = {
          "input": os.path.abspath(path),
          **scale_info,
          "model": model.path, "method": config.method,
          "refine_steps": _STEPS.value,
          "refine_config": dataclasses.asdict(config),
          "geometry": geometry.to_dict(),
          "start": str(out.start_name[j]),
          "centre_shift_px": [int(x) for x in out.centre_shift[j]],
          "candidates": [{"start": str(name), "loss": float(loss)}
                         for name, loss in zip(out.candidate_name[j],
                                               out.candidate_loss[j])],
          "experimental": inputs.EXPERIMENTAL.value,
          "valid_fraction": float(valid.mean()),
          "loss_network": float(out.network_paper_loss[j]),
          "loss_start": float(out.paper_loss_before[j]),
          "loss_refined": float(out.paper_loss_after[j]),
          "masked_loss_network": float(out.network_loss[j]),
          "masked_loss_start": float(out.loss_before[j]),
          "masked_loss_refined": float(out.loss_after[j]),
          "dark_level_log10": float(out.dark_level[j]),
          "volume_nm3": float(out.density[j].sum() * voxel_nm3),
          "seconds": seconds,
          "loss_protocol": metrics_lib.PAPER_PROTOCOL,
      }
      title = (f"{stem}: loss {metrics['loss_network']:.2e} (network) -> "
               f"{metrics['loss_refined']:.2e} ({config.method}, best start "
               f"{metrics['start']}, {_STEPS.value} steps)")
      if not report.try_write_result(
          _OUT.value, stem, path, bad, density=out.density[j],
          pattern=pattern, valid=valid, simulated=out.pattern[j],
          metrics=metrics, title=title, mesh=_MESH.value,
          figure=_FIGURES.value):
        continue
      done += 1
      finished = i + j + 1
      elapsed = time.perf_counter() - t0
      eta = elapsed / finished * (len(good) - finished)
      print(f"[{finished}/{len(good)}, {finished / elapsed:.2f} patterns/s, "
            f"ETA {eta:.0f} s] {title} ({seconds:.1f} s); wrote "
            f"{_OUT.value}/{stem}.*", flush=True)
  print(f"reconstructed {done} of {len(good) + len(bad)} patterns in "
        f"{time.perf_counter() - t0:.1f} s")
  if bad:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
