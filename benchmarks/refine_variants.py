r"""Refinement variants side by side on a tuning set (never the test seed).

  python -m benchmarks.refine_variants --data=DIR [--n=12]
      [--conditions=simulated_experiment,clean]
      [--variants="default;keep3:keep=3;planes24:planes=24"]
      [--json_out=FILE]

``--data``: a dataset written by ``experiments.make_dataset --test_set``
with a tuning seed (777 in ``docs/results.md``; the test seed 20261125 is
for the final measurement only). Each variant is ``NAME[:FIELD=VALUE,...]``
of ``msftnet.reconstruct.RefineConfig`` (ints, floats, tuples as Python
literals). The simulated-experiment filter is keyed as in
``experiments.evaluate``. One JSON line per variant and condition: median
and mean aligned IoU against the true 64^3 object, seconds per pattern.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import augment
from msftnet import data as data_lib
from msftnet import metrics
from msftnet import pretrained
from msftnet import reconstruct as recon
from msftnet.launch import refine_flags

_DATA = flags.DEFINE_string("data", None, "Tuning dataset.", required=True)
_N = flags.DEFINE_integer("n", 12, "Solids used.")
_CONDITIONS = flags.DEFINE_list("conditions",
                                ["simulated_experiment", "clean"],
                                "Inputs: clean and/or simulated_experiment.")
_VARIANTS = flags.DEFINE_string("variants", "default",
                                "NAME[:FIELD=VALUE,...] separated by ';'.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def parse_variant(text: str) -> tuple[str, recon.RefineConfig]:
  """``NAME[:FIELD=VALUE,...]`` -> ``(NAME, RefineConfig)``."""
  name, _, fields = text.partition(":")
  return name.strip(), refine_flags.parse_refine_config(fields)


def main(argv):
  del argv
  report = Report()
  src = data_lib.PaperSource(_DATA.value)
  recs = [src[i] for i in range(min(_N.value, len(src)))]
  model = pretrained.load_model(None)
  for text in _VARIANTS.value.split(";"):
    name, config = parse_variant(text)
    for condition in _CONDITIONS.value:
      ious, t0 = [], time.perf_counter()
      for r in recs:
        pat, val = augment.evaluation_input(r["pattern"], int(r["index"]),
                                            condition)
        out = recon.reconstruct(pat, val, model=model, config=config)
        ious.append(metrics.aligned_iou(out.density, r["density"]))
      report.add({"benchmark": "refine_variants", "variant": name,
                  "config": text, "condition": condition, "n": len(recs),
                  "median_aligned_iou": round(float(np.median(ious)), 4),
                  "mean_aligned_iou": round(float(np.mean(ious)), 4),
                  "aligned_iou": [round(float(x), 3) for x in ious],
                  "seconds_per_pattern": round(
                      (time.perf_counter() - t0) / len(recs), 1)})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
