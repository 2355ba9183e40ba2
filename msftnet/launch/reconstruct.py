r"""Reconstruct particles from single patterns: network + MSFT refinement.

  python -m experiments.reconstruct --out=DIR PATTERN [PATTERN ...]
      [--checkpoint=DIR] [--method=polytope|voxels] [--refine_steps=N]
      [--coarse_steps=N] [--refine=FIELD=VALUE,...]
      [--input_scale=auto|counts|log] [--experimental]
      [--mask=FILE] [--detector_distance_mm=D --pixel_um=P
      [--beam_centre=ROW,COL] [--wavelength_nm=L]] [--mesh [--mesh_format=obj|stl|ply]] [--nofigures]
      [--batch=32] [--frames=SPEC]
      [--overwrite] [--process_id=I --num_processes=P]
      [--forward_model=msft|pmsft] [--material=henke:Ag]

Inputs (``msftnet.measured``): PNG (RGB channel 1; 8/16-bit grayscale),
``.npy``, HDF5/CXI (``entry_1/data_1/data`` or
``entry_1/instrument_1/detector_1/data``, one frame or a run ``[N, H, W]``
whose frames are written as ``STEM_frameK``; the CXI mask beside the data;
compressed datasets (bitshuffle-LZ4, Blosc, Zstd, ... through ``hdf5plugin``)
and virtual datasets over several files read frame by frame, so memory stays
flat over a run; ``--frames=0:100,250`` picks frames, and the stems keep the
file's frame numbers).
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
``--nofigures``) and with ``--mesh`` ``DIR/STEM.obj`` (``.stl``, ``.ply`` with
``--mesh_format``; watertightness, volume and area in ``STEM.json``). An input that cannot be used gets one line on stderr and
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

import sys
import time

from absl import app
from absl import flags
from absl import logging

from msftnet import launch
from msftnet import pretrained
from msftnet import report
from msftnet import runs
from msftnet.launch import inputs
from msftnet.launch import refine_flags

_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Model directory or training work directory "
    "(default: the bundled model).")
_refine_config = refine_flags.define()
_START = flags.DEFINE_enum("start", "network", ["auto", "network", "sphere"],
                           "Voxel refinement: start (msftnet.refine.voxels).")
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
  if flags.FLAGS.refine_steps < 0 or _BATCH.value < 1:
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
  try:
    geometry = inputs.geometry(model.geometry)
  except ValueError as e:
    print(f"error: --material: {e}", file=sys.stderr)
    sys.exit(1)
  good, bad = inputs.refs(paths)
  launch.print_errors(bad)
  try:
    good, skipped = runs.select_work(
        good, _OUT.value, process_id=_PROCESS_ID.value,
        num_processes=_NUM_PROCESSES.value, overwrite=_OVERWRITE.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if skipped:
    print(f"skipping {len(skipped)} finished inputs (their STEM.json exists; "
          "--overwrite redoes them)", flush=True)
  try:
    config = _refine_config(start=_START.value)
  except ValueError as e:
    print(f"error: --refine: {e}", file=sys.stderr)
    sys.exit(1)
  t0 = time.perf_counter()
  written, errors = runs.reconstruct_inputs(
      inputs.stream(good, geometry), _OUT.value, model, total=len(good), config=config, geometry=geometry,
      batch=_BATCH.value, mesh=inputs.mesh_format(), figures=_FIGURES.value,
      experimental=inputs.EXPERIMENTAL.value)
  launch.print_errors(errors)
  bad += errors
  print(f"reconstructed {len(written)} of {len(good) + len(bad) - len(errors)}"
        f" patterns in {time.perf_counter() - t0:.1f} s; wrote "
        f"{_OUT.value}/STEM.*")
  if bad:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
