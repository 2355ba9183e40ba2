"""JSON-lines records: the one reader and writers of the project's logs.

Training's ``metrics.jsonl``, the evaluations' resumable result rows and the
benchmarks' outputs are JSON lines, one record (a dict) per line. Appends
are flushed to disk before returning, so a finished record survives a
crash; a line torn by a kill mid-write is skipped on reading (so a log
rewritten with :func:`write_jsonl` loses it), and a torn log never makes a
run unresumable.
"""

from __future__ import annotations

import json
import os

from msftnet.paper_io import atomic_write

__all__ = ["read_jsonl", "append_jsonl", "write_jsonl"]


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
