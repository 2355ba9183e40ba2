r"""Forward-fit parametrised solids to patterns (the classical baseline).

  python -m experiments.fit --out=DIR PATTERN [PATTERN ...] [--experimental]
      [--mask=FILE] [--input_scale=...] [--detector_distance_mm=D ...]
      [--classes=Icosahedron,Decahedron] [--starts=4] [--coarse_steps=80]
      [--steps=30] [--keep=3] [--coarse_survivors=K] [--mesh [--mesh_format=obj|stl|ply]]
      [--forward_model=msft|pmsft] [--material=henke:Ag]

Same inputs (and input flags) and outputs as ``experiments.reconstruct``: for each input
``STEM`` it fits every class of ``msftnet.fitting.FIT_CLASSES`` (19 polyhedra
and the sphere; size, stretch, orientation and dark level by gradient descent
from ``--starts`` random starts; ``--coarse_steps`` on the coarse problem,
then ``--steps`` on the full one for the ``--keep`` best classes;
``--coarse_steps=0`` fits every start on the full problem) and writes ``DIR/STEM_density.npy`` (the best
solid), ``DIR/STEM.json`` (best class, its parameters, the loss of every
class; paper protocol and masked), ``DIR/STEM.png`` and with ``--mesh``
``DIR/STEM.obj`` (``.stl``, ``.ply`` with ``--mesh_format``). Runtimes: benchmarks/RESULTS.md ("Forward fitting").
"""

from __future__ import annotations

import sys
import time

from absl import app
from absl import flags
from absl import logging

from msftnet import launch
from msftnet import report
from msftnet import runs
from msftnet.geometry import Geometry
from msftnet.launch import fit_flags
from msftnet.launch import inputs

_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_fit_config = fit_flags.define()


def main(argv):
  logging.set_verbosity(logging.WARNING)
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give at least one PATTERN file.")
  try:
    config = _fit_config()
    geometry = inputs.geometry(Geometry())      # the paper's physics
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  try:
    report.check_out_dir(_OUT.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  good, bad = inputs.load(paths, geometry)
  launch.print_errors(bad)
  t0 = time.perf_counter()
  written, errors = runs.fit_inputs(good, _OUT.value, config=config,
                                    geometry=geometry, mesh=inputs.mesh_format())
  launch.print_errors(errors)
  print(f"fitted {len(written)} of {len(good) + len(bad)} patterns in "
        f"{time.perf_counter() - t0:.0f} s; wrote {_OUT.value}/STEM.*")
  if bad or errors:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
