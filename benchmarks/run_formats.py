r"""The same run in three HDF5 layouts reconstructs to the same densities.

  python -m benchmarks.run_formats [--n=6] [--seed=20261210]
      [--photons=3e4] [--json_out=FILE]

``--n`` truncated test solids (data seed ``--seed``) become Poisson photon
counts on the model's q grid (uint16, a beam stop and a module gap in the
CXI mask) and are written three times: an uncompressed CXI run, the same
bitshuffle-LZ4 compressed (as Jungfrau/Eiger data are), and a CXI file whose
frames are a virtual dataset over two source files. Each is reconstructed
with ``msftnet reconstruct``'s library path (``measured.frame_refs`` ->
``read_frames`` -> ``runs.reconstruct_inputs``, bundled models, default
refinement) into its own folder; the densities of every frame are compared
bit for bit with the uncompressed run's, and each frame's aligned IoU
against the true solid is reported.
"""

from __future__ import annotations

import os
import tempfile

from absl import app
from absl import flags
import h5py
import hdf5plugin
import numpy as np

from benchmarks import simulated_runs
from benchmarks.jsonlines import Report
from msftnet import measured
from msftnet import metrics
from msftnet import pretrained
from msftnet import runs
from msftnet.refine.base import RefineConfig

_N = flags.DEFINE_integer("n", 6, "Frames (test solids).")
_SEED = flags.DEFINE_integer("seed", 20261210, "Data seed (never tuned on).")
_PHOTONS = flags.DEFINE_float("photons", 3e4, "Photons at the brightest pixel.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def _write(folder, counts, mask):
  os.makedirs(folder, exist_ok=True)
  paths = {}
  for name, kw in (("plain", {}),
                   ("bitshuffle_lz4", hdf5plugin.Bitshuffle(cname="lz4"))):
    paths[name] = os.path.join(folder, f"{name}.cxi")
    with h5py.File(paths[name], "w") as f:
      f.create_dataset("entry_1/data_1/data", data=counts,
                       chunks=(1,) + counts.shape[1:], **kw)
      f["entry_1/data_1/mask"] = mask
  n = len(counts)
  layout = h5py.VirtualLayout(shape=counts.shape, dtype=counts.dtype)
  for i, (lo, hi) in enumerate(((0, n // 2), (n // 2, n))):
    src = f"virtual_source{i}.h5"
    with h5py.File(os.path.join(folder, src), "w") as f:
      f["data"] = counts[lo:hi]
    layout[lo:hi] = h5py.VirtualSource(src, "data", shape=counts[lo:hi].shape)
  paths["virtual"] = os.path.join(folder, "virtual.cxi")
  with h5py.File(paths["virtual"], "w") as f:
    f.create_virtual_dataset("entry_1/data_1/data", layout, fillvalue=0)
    f["entry_1/data_1/mask"] = mask
  return paths


def main(argv):
  del argv
  model = pretrained.load_model()
  report = Report()
  counts, mask, truth = simulated_runs.count_frames(_N.value, _SEED.value, _PHOTONS.value,
                                model.geometry)
  with tempfile.TemporaryDirectory() as tmp:
    paths = _write(tmp, counts, mask)
    dens = {}
    for name, path in paths.items():
      out = os.path.join(tmp, f"out_{name}")
      refs, bad = measured.frame_refs([path])
      written, errors = runs.reconstruct_inputs(
          measured.read_frames(refs, geometry=model.geometry), out, model,
          config=RefineConfig(), total=len(refs), figures=False)
      assert not bad and not errors, (bad, errors)
      stem = measured.stem_of(path)
      dens[name] = [np.load(os.path.join(out, f"{stem}_frame{k}_density.npy"))
                    for k in range(len(counts))]
    for k in range(len(counts)):
      report.add({
          "frame": k,
          "aligned_iou": round(float(metrics.aligned_iou(
              dens["plain"][k], truth[k])), 4),
          **{f"{name}_bit_identical": bool(np.array_equal(dens[name][k],
                                                          dens["plain"][k]))
             for name in ("bitshuffle_lz4", "virtual")}})
    report.add({"summary": True, "frames": len(counts),
                **{f"{name}_identical_frames": sum(
                    np.array_equal(a, b) for a, b in zip(dens[name],
                                                         dens["plain"]))
                   for name in ("bitshuffle_lz4", "virtual")}})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
