r"""Read stored trust rows again: what the published pooled and offline figures come from.

  python -m benchmarks.trust_rows --what=pooled --set=simexp FILE...
  python -m benchmarks.trust_rows --what=rules FILE...
  python -m benchmarks.trust_rows --what=size FILE...
  python -m benchmarks.trust_rows --what=depth FILE...
  python -m benchmarks.trust_rows --what=bodies [--baseline=ROWS] FILE...
  python -m benchmarks.trust_rows --what=centre FILE...
  python -m benchmarks.trust_rows --what=edge FILE...

FILE: JSON-lines rows of ``python -m benchmarks.trust`` (results with a
truth; the no-particle set is left out of ``rules``, ``size`` and
``depth``). ``pooled``: the aligned IoU of one set over all files together
(median, mean, n). ``rules``: wrong (aligned IoU < 0.5) and good (>= 0.7)
results flagged (``msftnet.refine.trust.flagged``) with every rule, and
with the deep-body rule or the large-residual clause switched off, and the
results whose flag each rule decides. ``size``: the results per quarter of
the size log ratio and the fraction right (aligned IoU >= 0.5). ``depth``:
the results deeper than ``msftnet.refine.trust.DEEP_BODY`` and how many
were right; for the two-body answers among them, the confidence and flag
they would get were the rule to read the deepest body's depth
(``body_depth_log_ratios``) instead of the union's: ``[set, name, aligned
IoU, confidence, confidence per body, flagged per body]``. ``bodies`` (runs with ``--refine=two_bodies=True``): per set,
the results refined again as two bodies, those where two bodies were kept,
the ratio of the two bodies' unexplained variance to the one body's, how
many times the noise the one body left unexplained (kept and not), and,
with ``--baseline`` (the rows of the same seed and sets without two
bodies), each set's median aligned IoU in both and every changed result.
``centre``: per file, the simexp and cxi results by how far the chosen
centre (``centre_shift``) lies from the true one (the filter's offset,
``true_centre``, or the CXI run's ``beam_offset_px``; for simexp rows
written before ``true_centre`` was stored, the offset of the filter's key
of the k-th simexp row, ``augment.evaluation_key(k + 1)``, since the test
set's samples are numbered from 1): how many are off by 0, 1, 2 and more
than 2 px, and the median aligned IoU of those within 1 px and of the
others. ``edge``: the results read about a centre on the edge of the
default search's window (10 px from the middle on an axis), how many were
right (>= 0.5) and good (>= 0.7), how many were wrong with a confidence
of 0.5 or more, and how many the cap of an edge centre
(``trust.EDGE_CENTRE_CONFIDENCE``) newly flags among rows written without
it (wrong, right, good), against the fraction right of all rows. One JSON line per
answer.
"""

from __future__ import annotations

import collections
import contextlib

from absl import app
from absl import flags
import numpy as np

from benchmarks.jsonlines import Report
from msftnet import augment
from msftnet import records
from msftnet.refine import trust

_WHAT = flags.DEFINE_enum("what", "pooled", ["pooled", "rules", "size",
                                             "depth", "bodies", "centre",
                                             "edge"],
                          "What to report.")
_BASELINE = flags.DEFINE_string(
    "baseline", None, "--what=bodies: the same seed's rows without two "
    "bodies.")
_SET = flags.DEFINE_string("set", "simexp", "The set of --what=pooled.")
#: The centre search's window of rows that do not record ``centre_at_edge``
#: (``RefineConfig.centre_search``).
_MAX_SHIFT = 10
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


@contextlib.contextmanager
def _switched_off(name: str):
  """``trust.<name>`` set out of reach (the rule never fires) meanwhile."""
  old = getattr(trust, name)
  setattr(trust, name, float("inf"))
  try:
    yield
  finally:
    setattr(trust, name, old)


def _counts(rows) -> dict:
  flag = [trust.flagged(r["signals"]) for r in rows]
  iou = [r["aligned_iou"] for r in rows]
  bad = sum(i < 0.5 for i in iou)
  good = sum(i >= 0.7 for i in iou)
  return {"wrong_flagged": f"{sum(f for f, i in zip(flag, iou) if i < 0.5)} "
                           f"of {bad}",
          "good_flagged": f"{sum(f for f, i in zip(flag, iou) if i >= 0.7)} "
                          f"of {good}", "flags": flag}


def report_bodies(rows, report: Report, paths) -> None:
  """``--what=bodies``: what the two-body retry did, per set."""
  base = {}
  if _BASELINE.value:
    for r in records.read_jsonl(_BASELINE.value):
      if not r.get("summary") and "aligned_iou" in r:
        base.setdefault(r["set"], []).append(r)
  for set_name in dict.fromkeys(r["set"] for r in rows):
    rs = [r for r in rows if r["set"] == set_name]
    tried = [r for r in rs if "two_body_unexplained" in r["signals"]
             or r["signals"].get("bodies") == 2]
    kept = [r for r in tried if r["signals"].get("bodies") == 2]
    ratio = [(r["signals"]["unexplained_fraction"]
              / max(r["signals"]["one_body_unexplained"], 1e-12))
             if r["signals"].get("bodies") == 2 else
             (r["signals"]["two_body_unexplained"]
              / max(r["signals"]["unexplained_fraction"], 1e-12))
             for r in tried]
    # How far above the noise each tried one-body answer was.
    over = [(r["signals"].get("one_body_unexplained",
                              r["signals"]["unexplained_fraction"])
             / max(r["signals"]["noise_fraction"], 1e-12), r in kept)
            for r in tried]
    out = {"what": "bodies", "set": set_name, "n": len(rs),
           "tried": len(tried), "two_bodies_kept": len(kept),
           "ratios_tried": sorted(round(x, 3) for x in ratio),
           "over_noise_kept": sorted(round(x, 2) for x, k in over if k),
           "over_noise_not_kept": sorted(round(x, 2) for x, k in over
                                         if not k),
           "seconds_per_pattern": round(float(np.mean(
               [r["seconds"] for r in rs])), 2) if all(
                   "seconds" in r for r in rs) else None,
           "median": round(float(np.median([r["aligned_iou"] for r in rs])),
                           3),
           "files": paths}
    ref = base.get(set_name)
    if ref:
      if [r["name"] for r in ref] != [r["name"] for r in rs]:
        raise app.UsageError(f"--baseline: its {set_name} rows are not the "
                             "same inputs.")
      out["baseline_median"] = round(float(np.median(
          [r["aligned_iou"] for r in ref])), 3)
      out["changed"] = [[r["name"], a["aligned_iou"], r["aligned_iou"]]
                        for a, r in zip(ref, rs)
                        if a["aligned_iou"] != r["aligned_iou"]]
    report.add(out)


def report_centre(paths, report: Report) -> None:
  """``--what=centre``: the results by their centre's error, per file and
  set."""
  for path in paths:
    rows = [r for r in records.read_jsonl(path)
            if not r.get("summary") and "aligned_iou" in r]
    for set_name in ("simexp", "cxi"):
      rs = [r for r in rows if r["set"] == set_name]
      if not rs:
        continue
      if set_name == "cxi":
        true = [r["beam_offset_px"] for r in rs]
      else:
        true = [r.get("true_centre") or augment.simulated_experiment_offset(
            augment.evaluation_key(k + 1)) for k, r in enumerate(rs)]
      err = np.asarray([max(abs(int(a) - int(b)) for a, b in
                            zip(r["centre_shift"], t))
                        for r, t in zip(rs, true)])
      iou = np.asarray([r["aligned_iou"] for r in rs])
      med = lambda x: round(float(np.median(x)), 3) if len(x) else None
      report.add({"what": "centre", "file": path, "set": set_name,
                  "n": len(rs),
                  "off_by_px": {"0": int((err == 0).sum()),
                                "1": int((err == 1).sum()),
                                "2": int((err == 2).sum()),
                                "more": int((err > 2).sum())},
                  "median": med(iou), "median_within_1px": med(iou[err <= 1]),
                  "median_off_more_than_1px": med(iou[err > 1])})


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("Give one or more trust row files (JSON lines).")
  rows = [r for p in paths for r in records.read_jsonl(p)
          if not r.get("summary") and "aligned_iou" in r]
  if not rows:
    raise app.UsageError(f"No rows with a truth in {', '.join(paths)}.")
  report = Report()
  what = _WHAT.value
  if what == "centre":
    report_centre(paths, report)
    report.write(_JSON_OUT.value)
    return
  if what == "pooled":
    iou = [r["aligned_iou"] for r in rows if r["set"] == _SET.value]
    if not iou:
      raise app.UsageError(f"No rows of set {_SET.value!r} in the files.")
    report.add({"what": what, "set": _SET.value, "n": len(iou),
                "median": round(float(np.median(iou)), 3),
                "mean": round(float(np.mean(iou)), 3), "files": paths})
  if what == "bodies":
    report_bodies(rows, report, paths)
  rows = [r for r in rows if r["set"] != "noparticle"]
  if what == "rules":
    every = _counts(rows)
    out = {"what": what, "files": paths, "n": len(rows),
           "every_rule": {k: v for k, v in every.items() if k != "flags"}}
    for label, name in (("without_deep_body", "DEEP_BODY"),
                        ("without_large_residual", "LARGE_RESIDUAL")):
      with _switched_off(name):
        off = _counts(rows)
      out[label] = {k: v for k, v in off.items() if k != "flags"}
      out[label]["decided"] = [
          [r["set"], r["name"], r["aligned_iou"]]
          for r, a, b in zip(rows, every["flags"], off["flags"]) if a != b]
    report.add(out)
  elif what == "size":
    buckets = collections.defaultdict(list)
    for r in rows:
      buckets[round(r["signals"]["size_log_ratio"] * 4) / 4].append(
          r["aligned_iou"] >= 0.5)
    for k in sorted(buckets):
      report.add({"what": what, "size_log_ratio": k, "n": len(buckets[k]),
                  "right": int(sum(buckets[k])),
                  "fraction_right": round(float(np.mean(buckets[k])), 2)})
  elif what == "edge":
    def at_edge(r):
      recorded = r["signals"].get("centre_at_edge")
      if recorded is not None:
        return recorded
      return ("centre_shift" in r and max(abs(int(x)) for x in
                                          r["centre_shift"]) >= _MAX_SHIFT)

    edge = [r for r in rows if at_edge(r)]
    right = [r for r in rows if r["aligned_iou"] >= 0.5]
    report.add({
        "what": what, "files": paths, "n": len(rows),
        "fraction_right": round(len(right) / max(len(rows), 1), 3),
        "at_edge": len(edge),
        "at_edge_right": sum(r["aligned_iou"] >= 0.5 for r in edge),
        "at_edge_good": sum(r["aligned_iou"] >= 0.7 for r in edge),
        "at_edge_confident_wrong": sum(
            r["aligned_iou"] < 0.5 and r["confidence"] >= 0.5 for r in edge),
        # What the cap at trust.EDGE_CENTRE_CONFIDENCE newly flags among
        # rows written without it.
        "newly_flagged_wrong": sum(
            not r["flagged"] and r["aligned_iou"] < 0.5 for r in edge),
        "newly_flagged_right": sum(
            not r["flagged"] and r["aligned_iou"] >= 0.5 for r in edge),
        "newly_flagged_good": sum(
            not r["flagged"] and r["aligned_iou"] >= 0.7 for r in edge),
        "rows": [[r["set"], r["name"], r["centre_shift"], r["aligned_iou"],
                  r["confidence"]] for r in edge]})
  elif what == "depth":
    deep = [r for r in rows
            if r["signals"].get("depth_log_ratio", 0.0) > trust.DEEP_BODY]
    # Two-body answers read per body instead: the deepest body's depth.
    per_body = []
    for r in deep:
      sig = r["signals"]
      if "body_depth_log_ratios" in sig:
        alt = dict(sig, depth_log_ratio=max(sig["body_depth_log_ratios"]))
        per_body.append([r["set"], r["name"], r["aligned_iou"],
                         round(trust.confidence(sig), 2),
                         round(trust.confidence(alt), 2),
                         trust.flagged(alt)])
    report.add({"what": what, "above": trust.DEEP_BODY, "n": len(deep),
                "right": sum(r["aligned_iou"] >= 0.5 for r in deep),
                "rows": [[r["set"], r["name"], r["aligned_iou"],
                          round(r["signals"]["depth_log_ratio"], 2)]
                         for r in deep],
                "two_bodies_read_per_body": per_body})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
