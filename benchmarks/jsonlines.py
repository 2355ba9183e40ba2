"""JSON-lines reporting shared by the benchmarks: print now, save at the end."""

from __future__ import annotations

import json

from msftnet import records


class Report:
  """Collects records, printing each as one JSON line as it arrives."""

  def __init__(self):
    self.records: list[dict] = []

  def add(self, record: dict) -> None:
    self.records.append(record)
    print(json.dumps(record), flush=True)

  def write(self, path: str | None) -> None:
    """Write all records to ``path`` atomically (nothing if ``path`` is None)."""
    if not path:
      return
    records.write_jsonl(path, self.records)
