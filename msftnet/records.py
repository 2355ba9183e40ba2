"""The project's records: JSON-lines logs and the per-input result JSON.

Training's ``metrics.jsonl``, the evaluations' resumable result rows and the
benchmarks' outputs are JSON lines, one record (a dict) per line. Appends
are flushed to disk before returning, so a finished record survives a
crash; a line torn by a kill mid-write is skipped on reading (so a log
rewritten with :func:`write_jsonl` loses it), and a torn log never makes a
run unresumable.

A result's ``STEM.json`` (a reconstruction or a fit of one input) is written
by :func:`write_result_json` only, with ``"schema_version"``
(:data:`RESULT_SCHEMA_VERSION`), and read back by :func:`read_result_json`
(a run table reads the same record).
"""

from __future__ import annotations

import json
import math
import os

from msftnet.paper_io import atomic_write

__all__ = ["read_jsonl", "append_jsonl", "write_jsonl", "write_result_json",
           "read_result_json", "RESULT_SCHEMA_VERSION"]

#: Version of the ``STEM.json`` result record; raised when a key changes
#: meaning or disappears (added keys keep it). 2: after a refinement,
#: ``shape_classes``, ``radius_nm``, ``stretch`` and ``orientation`` are
#: the shape network's reading of the fitted answer (``shape_source``), no
#: longer of the measured pattern (now ``shape_classes_pattern``,
#: ``radius_nm_pattern``).
RESULT_SCHEMA_VERSION = 2


def read_jsonl(path) -> list[dict]:
  """The records of ``path`` (``[]`` if it does not exist); a line that is
  not a JSON object (torn by a kill mid-write) is skipped."""
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(rec, dict):
        out.append(rec)
  return out


def append_jsonl(path, records) -> None:
  """Append ``records`` to ``path``, flushed and synced to disk."""
  with open(path, "a") as f:
    for rec in records:
      f.write(json.dumps(rec) + "\n")
    f.flush()
    os.fsync(f.fileno())


def write_jsonl(path, records) -> None:
  """Write ``records`` to ``path`` atomically (replacing it)."""
  with atomic_write(path, "w") as f:
    for rec in records:
      f.write(json.dumps(rec) + "\n")


def _strict(value):
  """``value`` with every non-finite float (NaN, inf) as None: JSON has
  none, and a reader must not find a bare NaN."""
  if isinstance(value, dict):
    return {k: _strict(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_strict(v) for v in value]
  if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
    value = value.item()                      # a numpy scalar
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_result_json(path, record: dict) -> None:
  """Write one result record to ``path`` atomically, with
  ``"schema_version"`` first; numpy scalars become numbers, non-finite
  numbers ``null`` (strict JSON)."""
  record = {"schema_version": RESULT_SCHEMA_VERSION,
            **{k: v for k, v in record.items() if k != "schema_version"}}
  with atomic_write(path, "w") as f:
    json.dump(_strict(record), f, indent=2, default=float, allow_nan=False)
    f.write("\n")


def read_result_json(path) -> dict:
  """A result record written by :func:`write_result_json` (ValueError, one
  sentence, for a file that is not one or of a newer schema)."""
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: not a readable result record ({e}).") from None
  if not isinstance(record, dict) or "schema_version" not in record:
    raise ValueError(f"{path}: expected a result record with a "
                     "schema_version, got none.")
  if record["schema_version"] > RESULT_SCHEMA_VERSION:
    raise ValueError(f"{path}: result schema version "
                     f"{record['schema_version']} is newer than this "
                     f"msftnet reads ({RESULT_SCHEMA_VERSION}).")
  return record
