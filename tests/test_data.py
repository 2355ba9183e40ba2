"""Tests of the data pipelines (msftnet.data) and experiments.make_dataset."""

import os
import pathlib
import subprocess
import sys

import grain
import numpy as np
import pytest

from msftnet import Geometry
from msftnet import data
from msftnet import intensity
from msftnet import solids
from msftnet.metrics import best_offset_correlation

ROOT = pathlib.Path(__file__).parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "paper"
CONFIG = data.DataConfig(n_samples=48, seed=7)
BATCH = 4


def _iter(ds):
  return iter(ds.to_iter_dataset(
      grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))


@pytest.fixture(scope="module")
def train_batches():
  it = _iter(data.procedural_dataset(CONFIG, "train", BATCH))
  return [next(it) for _ in range(3)], it


def test_batch_contents(train_batches):
  batch = train_batches[0][0]
  assert batch["pattern"].shape == (BATCH, 128, 128)
  assert batch["density"].shape == (BATCH, 64, 64, 64)
  assert batch["valid"].dtype == bool and batch["label"].dtype == np.int32
  for key in ("pattern", "target", "density"):
    assert batch[key].min() >= 0 and batch[key].max() <= 1
  # The clean target is the log pattern of the density's MSFT at the
  # sample's dark offset: reproduced by msftnet.intensity.
  g = Geometry()
  for i in range(BATCH):
    r, _ = best_offset_correlation(
        np.asarray(intensity(batch["density"][i], g)), batch["target"][i])
    assert r > 0.9999
    params = data.sample_params(CONFIG, int(batch["index"][i]))
    assert solids.CLASSES[batch["label"][i]] == params.polyhedron


def test_training_is_augmented_and_validation_is_not(train_batches):
  batches, _ = train_batches
  valid = np.concatenate([b["valid"] for b in batches])
  changed = [not np.array_equal(b["pattern"], b["target"]) for b in batches]
  assert any(changed) and not valid.all()
  # The network's input convention, as at inference: 0 off the valid pixels.
  pattern = np.concatenate([b["pattern"] for b in batches])
  assert np.all(pattern[~valid] == 0)
  val = list(_iter(data.procedural_dataset(CONFIG, "validation", BATCH)))
  assert len(val) == 2                               # 8 of 48 samples, 5:1
  for b in val:
    assert b["valid"].all() and np.array_equal(b["pattern"], b["target"])
    assert b["index"].min() >= 40


def test_deterministic_and_resumable(train_batches):
  batches, it = train_batches
  state = it.get_state()
  after = next(it)
  again = _iter(data.procedural_dataset(CONFIG, "train", BATCH))
  first = next(again)
  for key in first:
    np.testing.assert_array_equal(first[key], batches[0][key])
  again.set_state(state)
  resumed = next(again)
  for key in after:
    np.testing.assert_array_equal(resumed[key], after[key])


def test_every_epoch_is_a_new_permutation_of_the_training_split():
  stream = data.index_dataset(CONFIG, "train")
  n_train = data.split_sizes(CONFIG.n_samples)[0]
  items = [stream[k] for k in range(3 * n_train)]
  epochs = [[i for i, e in items if e == k] for k in range(3)]
  for k, idx in enumerate(epochs):
    assert sorted(idx) == list(range(n_train))
    assert items[k * n_train][1] == k
  assert epochs[0] != epochs[1] != epochs[2]
  val = data.index_dataset(CONFIG, "validation")
  assert [val[k] for k in range(len(val))] == [(i, 0) for i in range(40, 48)]


def test_split_shards_and_epochs():
  assert data.split_sizes(140_000) == (116_666, 23_334)
  shards = [data.procedural_dataset(CONFIG, "validation", 2, shard_index=k,
                                    shard_count=2) for k in range(2)]
  idx = [np.concatenate([b["index"] for b in _iter(s)]) for s in shards]
  assert not set(idx[0]) & set(idx[1])
  assert sorted(np.concatenate(idx)) == list(range(40, 48))
  # Two processes' batches together are the one-process batches of the
  # global size, in training too (same samples, same order, same epochs).
  one = data.index_dataset(CONFIG, "train", shard_index=0, shard_count=1)
  two = [data.index_dataset(CONFIG, "train", shard_index=k, shard_count=2,
                            global_batch_size=6) for k in range(2)]
  n_train = data.split_sizes(CONFIG.n_samples)[0]
  for g in range(2 * n_train // 6):        # across an epoch boundary
    assert ([two[0][3 * g + j] for j in range(3)] +
            [two[1][3 * g + j] for j in range(3)]) == [one[6 * g + j]
                                                       for j in range(6)]
  with pytest.raises(ValueError, match="global batch size that they divide"):
    data.index_dataset(CONFIG, "train", shard_index=0, shard_count=2,
                       global_batch_size=5)
  # A sample gets the same dark offset but a new filter in every epoch.
  params = [data.sample_params(CONFIG, i) for i in (3, 3)]
  a = data.simulate_batch(CONFIG, params, [3, 3], augmented=True,
                          epochs=[0, 1])
  np.testing.assert_array_equal(a["target"][0], a["target"][1])
  assert not np.array_equal(a["pattern"][0], a["pattern"][1])
  # Per-sample keys: a sample does not depend on its batch.
  b = data.simulate_batch(CONFIG, [params[0], data.sample_params(CONFIG, 9)],
                          [3, 9], augmented=True, epochs=[0, 0])
  np.testing.assert_array_equal(a["pattern"][0], b["pattern"][0])


def test_forward_model_and_material_reach_the_data():
  """A pMSFT config simulates its targets with pmsft and the material."""
  config = data.DataConfig(n_samples=6, seed=7, geometry=Geometry(
      n_voxels=32, detector_px=64).with_physics("pmsft", "0.11,0.079"))
  g = config.geometry
  assert g.forward_model == "pmsft" and g.material.delta == 0.11
  params = [data.sample_params(config, 1)]
  b = data.simulate_batch(config, params, [1])
  vol = b["density"][0]
  r_pmsft, _ = best_offset_correlation(np.asarray(intensity(vol, g)),
                                       b["target"][0])
  r_msft, _ = best_offset_correlation(
      np.asarray(intensity(vol, g.replace(forward_model="msft"))),
      b["target"][0])
  assert r_pmsft > 0.9999 and r_msft < 0.999


def test_bad_configs():
  with pytest.raises(ValueError, match="multiple of the target grid"):
    data.DataConfig(resolution=100)
  with pytest.raises(ValueError, match="must be a msftnet.Geometry"):
    data.DataConfig(geometry="paper")
  from msftnet import train
  from msftnet.configs import cpu
  for field, value, message in (
      ("material", "silver", "training config: material 'silver'"),
      ("forward_model", "mie", "training config: Geometry.forward_model"),
      ("wavelength_nm", -1.0, "training config: Geometry.wavelength_nm")):
    config = cpu.get_config()
    config[field] = value
    with pytest.raises(ValueError, match=message):
      train.data_config(config)
  # The experiment of a training config reaches its data.
  config = cpu.get_config()
  config.wavelength_nm, config.box_nm, config.resolution = 6.0, 200.0, 128
  dc = train.data_config(config)
  assert (dc.geometry.wavelength_nm, dc.geometry.box_nm) == (6.0, 200.0)
  assert dc.geometry.n_voxels == 64 and dc.simulation_geometry.n_voxels == 128
  assert train.training_geometry(config) == dc.geometry
  with pytest.raises(ValueError, match="split must be"):
    data.procedural_dataset(CONFIG, "test", 2)
  with pytest.raises(ValueError, match="fewer than batch_size"):
    data.procedural_dataset(CONFIG, "validation", 64)


def test_paper_source_reads_the_fixtures():
  src = data.PaperSource(FIXTURES)
  assert len(src) == 6
  rec = src[0]
  assert rec["density"].shape == (64, 64, 64) and rec["pattern"].shape == (128, 128)
  assert set(np.unique(rec["density"])) <= {0.0, 1.0}
  assert src.params(0).polyhedron == solids.CLASSES[rec["label"]]
  batches = list(data.paper_dataset(FIXTURES, 3))
  assert batches[0]["pattern"].shape == (3, 128, 128)
  with pytest.raises(ValueError, match="no infos"):
    data.PaperSource(ROOT / "tests")


def _make(out, *extra):
  return subprocess.run(
      [sys.executable, "-m", "experiments.make_dataset", f"--out={out}",
       "--n=6", "--seed=11", "--resolution=64", *extra],
      cwd=ROOT, capture_output=True, text=True, timeout=600)


def _files(folder):
  return {str(p.relative_to(folder)): p.read_bytes()
          for p in sorted(pathlib.Path(folder).rglob("*")) if p.is_file()}


@pytest.mark.launcher
def test_make_dataset_round_trip_and_resume(tmp_path):
  out = tmp_path / "a"
  res = _make(out, "--test_set", "--batch=4")
  assert res.returncode == 0, res.stderr
  assert "wrote 6 samples" in res.stdout
  files = _files(out)
  assert len(files) == 13 and "infos1.csv" in files
  # The writer's output is read back, and its patterns are reproduced by the
  # MSFT from its volumes.
  src = data.PaperSource(out)
  assert len(src) == 6 and all(r["cut"] for r in src.rows)
  g = Geometry()
  for i in range(6):
    rec = src[i]
    r, _ = best_offset_correlation(np.asarray(intensity(rec["density"], g)),
                                   rec["pattern"])
    assert r > 0.999
    want = data.sample_params(
        data.DataConfig(n_samples=6, seed=11, test_set=True), i)
    got = src.params(i)
    assert got.polyhedron == want.polyhedron and got.caxis == want.caxis
    np.testing.assert_allclose(got.linear_map(), want.linear_map(), atol=1e-5)
    assert got.cut == pytest.approx(want.cut, rel=1e-5)
  # Interrupted run: a missing sample and a stray temporary file; resuming
  # (other batch size, 2 workers) gives byte-identical files.
  os.remove(out / "real" / "1" / "4r.png")
  (out / "real" / "1" / ".tmp-junk.png").write_bytes(b"half")
  res = _make(out, "--test_set", "--batch=3", "--workers=2")
  assert res.returncode == 0, res.stderr
  (out / "real" / "1" / ".tmp-junk.png").unlink()
  assert _files(out) == files


def test_make_dataset_refuses_a_file_as_output_folder(tmp_path):
  target = tmp_path / "not_a_folder"
  target.write_text("x")
  with pytest.raises(ValueError, match=(
      f"^the output folder {target} is a file, expected a folder.$")):
    data.write_paper_dataset(target, 2)
  assert target.read_text() == "x"