r"""A real run's report opened in a headless browser (#29).

  python -m benchmarks.run_report_check [--n=24] [--seed=20261211]
      [--screenshot=docs/report.png] [--overview=docs/summary.png]
      [--json_out=FILE]

Writes a CXI run of ``--n`` truncated test solids (data seed ``--seed``,
never tuned on; Poisson counts at 3e4 photons, a beam stop and a module gap
in the mask, bitshuffle-LZ4 compressed), reconstructs it with ``msftnet
reconstruct`` (bundled models, default refinement), then opens
``index.html`` in Debian's headless Chromium through Playwright and reports
its size, the rows of its table and the pattern sections it shows, the
console errors and how long it took to draw the 3D view, and how many
results carry a ``shape_warning`` (radii of the shape network and the
reconstruction more than 1.5x apart). ``--screenshot``
keeps a picture of the page; ``--overview`` a copy of ``summary.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from benchmarks.jsonlines import Report
from benchmarks import simulated_runs
from msftnet import pretrained

_N = flags.DEFINE_integer("n", 24, "Frames of the run.")
_SEED = flags.DEFINE_integer("seed", 20261211, "Data seed (never tuned on).")
_SHOT = flags.DEFINE_string("screenshot", None, "Save a picture of the page.")
_OVERVIEW = flags.DEFINE_string("overview", None, "Copy summary.png here.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write JSON lines here.")


def main(argv):
  del argv
  import h5py
  import hdf5plugin
  from playwright.sync_api import sync_playwright
  report = Report()
  model = pretrained.load_model()
  counts, mask, _ = simulated_runs.count_frames(_N.value, _SEED.value, 3e4, model.geometry)
  with tempfile.TemporaryDirectory() as tmp:
    run = os.path.join(tmp, "run.cxi")
    with h5py.File(run, "w") as f:
      f.create_dataset("entry_1/data_1/data", data=counts,
                       chunks=(1,) + counts.shape[1:],
                       **hdf5plugin.Bitshuffle(cname="lz4"))
      f["entry_1/data_1/mask"] = mask
    out = os.path.join(tmp, "out")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "msftnet.cli", "reconstruct",
                    f"--out={out}", run], check=True)
    seconds = time.perf_counter() - t
    page_path = os.path.join(out, "index.html")
    errors = []
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                  args=["--no-sandbox", "--disable-gpu"])
      page = browser.new_page(viewport={"width": 1300, "height": 1500})
      page.on("console", lambda m: m.type == "error" and errors.append(m.text))
      page.on("pageerror", lambda e: errors.append(str(e)))
      t = time.perf_counter()
      page.goto("file://" + page_path)
      page.wait_for_selector("#shapes .main-svg", timeout=60_000)
      drawn = time.perf_counter() - t
      rows = page.locator("table.runs tbody tr").count()
      sections = page.locator("div.pattern img").count()
      if _SHOT.value:
        page.screenshot(path=_SHOT.value, full_page=False)
      browser.close()
    if _OVERVIEW.value:
      shutil.copy(os.path.join(out, "summary.png"), _OVERVIEW.value)
    report.add({"frames": _N.value, "seed": _SEED.value,
                "reconstruct_seconds": round(seconds, 1),
                "index_html_mb": round(os.path.getsize(page_path) / 1e6, 2),
                "table_rows": rows, "pattern_sections": sections,
                "console_errors": errors, "drawn_seconds": round(drawn, 2),
                "summary_csv_rows": sum(1 for _ in open(
                    os.path.join(out, "summary.csv"))) - 1,
                "shape_warnings": sum(
                    "shape_warning" in json.load(open(os.path.join(out, f)))
                    for f in os.listdir(out) if f.startswith("run_frame")
                    and f.endswith(".json"))})
  report.write(_JSON_OUT.value)


if __name__ == "__main__":
  app.run(main)
