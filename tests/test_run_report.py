"""The run's table and report: summary.csv (also under concurrent writers,
after a torn write), summary.png, index.html (parsed, and opened in a real
headless browser)."""

import csv
import html.parser
import multiprocessing
import os
import shutil

import numpy as np
import pytest

from conftest import small_geometry
from conftest import solid_volume
from msftnet import records
from msftnet import report
from msftnet import run_report

CLASSES = ("Cube", "Octahedron", "Icosahedron", "Decahedron")


def _fake_result(out_dir, k: int, *, geometry=None,
                 flagged=False, density=True):
  """A result as a run writes it, for frame ``k`` (no reconstruction)."""
  stem = f"run_frame{k}"
  rng = np.random.default_rng(k)
  if density:
    vol = solid_volume(CLASSES[k % 4], 0.3 + 0.02 * (k % 5), n=32)
    np.save(os.path.join(out_dir, f"{stem}_density.npy"), vol)
  pattern = rng.random((128, 128)).astype(np.float32)
  with open(os.path.join(out_dir, f"{stem}_patterns.png"), "wb") as f:
    f.write(report.pattern_thumbnail(pattern, pattern > 0.05, pattern))
  record = {
      "input": "/data/run.cxi", "frame": k, "loss_network": 0.01,
      "loss_refined": 0.004 + 1e-4 * k, "volume_nm3": 1e5 * (1 + k),
      "confidence": 0.2 if flagged else 0.9,
      "shape_classes": [{"class": CLASSES[k % 4], "probability": 0.7},
                        {"class": "Sphere", "probability": 0.2}],
      "radius_nm": 30.0 + k, "stretch": 1.1,
      "orientation": {"axis_zyx": [1.0, 0.0, 0.0], "angle_deg": 10.0 + k},
  }
  if flagged:
    record["reconstruction_warning"] = "low confidence (0.20)"
  records.write_result_json(os.path.join(out_dir, f"{stem}.json"), record)
  return stem


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_summary_rows_follow_the_results(tmp_path):
  for k in (10, 2, 0):
    _fake_result(tmp_path, k, flagged=k == 2)
  rows = run_report.summary_rows(str(tmp_path))
  assert [r["stem"] for r in rows] == ["run_frame0", "run_frame2",
                                       "run_frame10"]      # natural order
  assert rows[1]["class"] == "Icosahedron" and rows[1]["warning"]
  assert rows[2]["class_2"] == "Sphere" and rows[2]["radius_nm"] == "40"
  assert rows[0]["orientation_angle_deg"] == "10"
  # A reconstruction without the shape network: the radius of its volume.
  rec = records.read_result_json(tmp_path / "run_frame0.json")
  del rec["radius_nm"], rec["shape_classes"]
  row = run_report.summary_row("x", rec)
  assert float(row["radius_nm"]) == pytest.approx(
      (3e5 / (4 * np.pi)) ** (1 / 3), rel=1e-4)
  assert row["class"] == ""
  # A fit's record names its best class.
  assert run_report.summary_row("y", {"best_class": "Cube", "loss": 0.1}
                                )["class"] == "Cube"
  # The input's own warning (a flattened pattern) reaches the table too.
  assert run_report.summary_row("z", dict(rec, warning="flattened"))[
      "warning"] == "flattened"


def test_update_summary_survives_a_torn_table_and_a_resume(tmp_path):
  for k in range(3):
    _fake_result(tmp_path, k)
  run_report.update_summary(str(tmp_path), ["run_frame0", "run_frame1"])
  table = tmp_path / "summary.csv"
  with open(table, "a") as f:
    f.write("run_frame7,Cub")                # a write torn by a kill
  run_report.update_summary(str(tmp_path), ["run_frame2"])
  rows = _read_csv(table)
  assert [r["stem"] for r in rows] == ["run_frame0", "run_frame1",
                                       "run_frame2"]
  assert tuple(rows[0]) == run_report.SUMMARY_COLUMNS
  # The end of a run: the complete table from every result on disk.
  _fake_result(tmp_path, 3)
  rows = run_report.write_summary(str(tmp_path), small_geometry(32, 64),
                                  index=False)
  assert len(rows) == 4 and len(_read_csv(table)) == 4
  assert (tmp_path / "summary.png").stat().st_size > 10_000


def _writer(out_dir, ks):
  for k in ks:
    _fake_result(out_dir, k, density=False)
    run_report.update_summary(out_dir, [f"run_frame{k}"])


def test_processes_sharing_a_run_lose_no_rows(tmp_path):
  ctx = multiprocessing.get_context("spawn")
  procs = [ctx.Process(target=_writer, args=(str(tmp_path), range(p, 40, 4)))
           for p in range(4)]
  for p in procs:
    p.start()
  for p in procs:
    p.join(60)
    assert p.exitcode == 0
  rows = _read_csv(tmp_path / "summary.csv")
  assert sorted(r["stem"] for r in rows) == sorted(
      f"run_frame{k}" for k in range(40))
  assert all(len(r) == len(run_report.SUMMARY_COLUMNS) for r in rows)


class _Page(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.rows, self.images, self.scripts, self.in_body = 0, 0, [], False

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "tbody":
      self.in_body = True
    if tag == "tr" and self.in_body:
      self.rows += 1
    if tag == "img" and attrs.get("src", "").startswith("data:image/png"):
      self.images += 1
    if tag == "script":
      self.scripts.append(attrs.get("src"))

  def handle_endtag(self, tag):
    if tag == "tbody":
      self.in_body = False


def _report_run(tmp_path, n=24):
  geometry = small_geometry(32, 64)
  for k in range(n):
    _fake_result(tmp_path, k, geometry=geometry, flagged=k % 5 == 0)
  run_report.write_summary(str(tmp_path), geometry)
  return tmp_path / "index.html"


def test_index_html_is_self_contained_and_lists_every_pattern(tmp_path):
  page = _report_run(tmp_path, n=6)
  parser = _Page()
  parser.feed(page.read_text())
  assert parser.rows == 6 and parser.images == 6
  assert all(src is None for src in parser.scripts)     # nothing fetched
  text = page.read_text()
  assert "Mesh3d" in text or "mesh3d" in text
  assert "http://" not in text.split("<body>")[1].split("<script")[0]


def _chromium():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    path = shutil.which(name)
    if path:
      return path
  if os.environ.get("CI", "").lower() in ("true", "1"):
    pytest.fail("no Chromium found, expected it in CI (.ci/run installs "
                "Debian's chromium).", pytrace=False)
  pytest.skip("no Chromium installed (apt-get install chromium).")


@pytest.mark.launcher
def test_index_html_opens_in_a_headless_browser(tmp_path):
  from conftest import required_import
  required_import("playwright")
  from playwright.sync_api import sync_playwright
  page_path = _report_run(tmp_path, n=24)
  assert page_path.stat().st_size < 20e6
  errors = []
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=_chromium(),
                                args=["--no-sandbox", "--disable-gpu"])
    try:
      page = browser.new_page()
      page.on("console", lambda m: m.type == "error" and errors.append(m.text))
      page.on("pageerror", lambda e: errors.append(str(e)))
      page.on("request", lambda r: r.url.startswith("http")
              and errors.append(f"network request {r.url}"))
      page.goto(page_path.as_uri())
      page.wait_for_selector("#shapes .main-svg", timeout=60_000)
      assert page.locator("table.runs tbody tr").count() == 24
      assert page.locator("div.pattern img").count() == 24
      # Every image decoded, the 3D view drew, the table sorts.
      assert page.evaluate("Array.from(document.images).every("
                           "i => i.complete && i.naturalWidth === 256)")
      assert page.locator("#shapes .gl-container canvas").count() >= 1
      page.locator("table.runs th", has_text="radius_nm").click()
      first = page.locator("table.runs tbody tr").first.get_attribute("id")
      page.locator("table.runs th", has_text="radius_nm").click()
      last = page.locator("table.runs tbody tr").first.get_attribute("id")
      assert (first, last) == ("row-run_frame0", "row-run_frame23")
    finally:
      browser.close()
  assert not errors, errors
