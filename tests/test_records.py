"""msftnet.records: JSON-lines logs survive torn lines."""

import json

from msftnet import records


def test_round_trip_and_a_torn_last_line(tmp_path):
  path = tmp_path / "log.jsonl"
  assert records.read_jsonl(path) == []
  records.append_jsonl(path, [{"step": 1, "loss": 0.5}])
  records.append_jsonl(path, [{"step": 2, "loss": 0.25}])
  with open(path, "a") as f:                # a kill mid-write
    f.write(json.dumps({"step": 3, "loss": 0.1})[:9])
  assert [r["step"] for r in records.read_jsonl(path)] == [1, 2]
  records.write_jsonl(path, records.read_jsonl(path)[:1])
  assert path.read_text() == '{"step": 1, "loss": 0.5}\n'
  assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]
