"""msftnet.records: JSON-lines logs survive torn lines."""

import json

import numpy as np
import pytest

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


def test_result_records_carry_their_schema_version(tmp_path):
  path = tmp_path / "r.json"
  records.write_result_json(path, {"loss": np.float32(0.5), "schema_version": 0,
                                   "nested": {"r": [float("nan"), 1.0]}})
  back = records.read_result_json(path)
  assert back == {"schema_version": records.RESULT_SCHEMA_VERSION, "loss": 0.5,
                  "nested": {"r": [None, 1.0]}}
  assert "NaN" not in path.read_text()
  assert list(back)[0] == "schema_version"
  newer = tmp_path / "newer.json"
  newer.write_text('{"schema_version": 99}')
  with pytest.raises(ValueError, match="newer than this msftnet reads"):
    records.read_result_json(newer)
  (tmp_path / "bare.json").write_text('{"loss": 1}')
  with pytest.raises(ValueError, match="with a schema_version, got none"):
    records.read_result_json(tmp_path / "bare.json")
  (tmp_path / "torn.json").write_text('{"loss": ')
  with pytest.raises(ValueError, match="not a readable result record"):
    records.read_result_json(tmp_path / "torn.json")
