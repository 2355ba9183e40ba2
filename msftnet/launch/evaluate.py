r"""The paper's evaluations, measured on this implementation.

  python -m experiments.evaluate [--out=eval] [--model=DIR]
      [--studies=testset,crop,experiment] [--results=docs/results.md]

A thin launcher over :mod:`msftnet.evaluation` (what each study does and
what it records is documented there): ``testset`` (paper Fig. 6: ``--n_test``
truncated solids of ``--test_seed``, a seed never used for training or
tuning), ``crop`` (Fig. 8: the first ``--n_crop`` of them seen inside a disc
of radius r px), ``experiment`` (Fig. 11: the patterns of
``--experiment_dir`` with forward fit, network, network + refinement).
Each study is resumable: finished items in ``--out`` are skipped when the
command is run again. ``--results`` gets the tables (Markdown).
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging

from msftnet import evaluation
from msftnet import launch
from msftnet import pretrained
from msftnet import report
from msftnet.launch import fit_flags
from msftnet.launch import refine_flags
from msftnet.paper_io import atomic_write

_D = evaluation.Settings
_OUT = flags.DEFINE_string("out", _D.out, "Work/output directory.")
_MODEL = flags.DEFINE_string("model", None, "Model directory (default bundled).")
_STUDIES = flags.DEFINE_list("studies", list(evaluation.STUDIES),
                             "Which studies to run.")
_RESULTS = flags.DEFINE_string("results", "docs/results.md",
                               "Markdown file for the tables.")
_N_TEST = flags.DEFINE_integer("n_test", _D.n_test, "Test-set solids (2 per "
                               "class on average).")
_N_CROP = flags.DEFINE_integer("n_crop", _D.n_crop, "Solids of the crop study.")
_fit_config = fit_flags.define("fit_")
_EXP_DIR = flags.DEFINE_string("experiment_dir", _D.experiment_dir,
                               "Folder with barke*.png and labels.csv.")
_BATCH = flags.DEFINE_integer("batch", _D.batch, "Patterns reconstructed "
                              "together.")
_TEST_SEED = flags.DEFINE_integer(
    "test_seed", _D.test_seed, "Seed of the test set (never used for "
    "training or for tuning the reconstruction).")
_refine_config = refine_flags.define()


def settings() -> evaluation.Settings:
  """The flags as evaluation settings (ValueError: one sentence)."""
  refine = _refine_config()
  fit = _fit_config()
  return evaluation.Settings(
      out=_OUT.value, refine=refine, batch=_BATCH.value, n_test=_N_TEST.value,
      n_crop=_N_CROP.value, test_seed=_TEST_SEED.value, fit=fit,
      experiment_dir=_EXP_DIR.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  unknown = set(_STUDIES.value) - set(evaluation.STUDIES)
  if unknown:
    raise app.UsageError(f"unknown studies {sorted(unknown)}; expected "
                         f"{', '.join(evaluation.STUDIES)}.")
  try:
    s = settings()            # bad settings fail before any work starts
    report.check_out_dir(s.out)
    os.makedirs(s.out, exist_ok=True)
    model = pretrained.load_model(_MODEL.value)
    errors = []
    for study in _STUDIES.value:
      print(f"== {study}", flush=True)
      errors += evaluation.STUDIES[study](model, s) or []
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  launch.print_errors(errors)
  text = evaluation.results_markdown(model, s)
  with atomic_write(_RESULTS.value, "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
