"""A run's table and report: ``summary.csv``, ``summary.png``, ``index.html``.

A run folder holds one ``STEM.json`` per reconstructed (or fitted) pattern
(:mod:`msftnet.runs`). From them:

* :func:`summary_rows`: one row per pattern (:data:`SUMMARY_COLUMNS`), the
  same rows as ``summary.csv``;
* :func:`update_summary`: merge new rows into ``DIR/summary.csv`` (during a
  run, after every chunk);
* :func:`write_summary`: the complete table from every ``STEM.json`` in the
  folder, ``summary.png`` (class histogram, size distribution, a gallery of
  shapes) and ``index.html`` (below).

Every write is atomic and happens under an exclusive lock on
``DIR/.summary.lock`` (``fcntl.flock``), so processes sharing a folder
(``--process_id/--num_processes``) never tear or lose rows: each rewrites
the whole table from what is on disk, one at a time, and the last to finish
sees every result.

``index.html`` is one self-contained page (plotly.js inline, images as data
URIs: it opens from disk, with no server and no network): the run's table,
sortable by a click on a column's header, and per pattern its input beside
the simulated pattern of the result (``STEM_patterns.png``, written with
every result) and an interactive 3D view of the shapes (plotly ``Mesh3d``
of the 0.5 isosurface; a menu picks the pattern). Past
:data:`MAX_REPORT_PATTERNS` patterns the table still lists all, the
per-pattern sections show the first ones.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import glob
import html
import io
import math
import os
import re

import numpy as np

from msftnet import records
from msftnet.geometry import Geometry
from msftnet.paper_io import atomic_write

__all__ = ["SUMMARY_COLUMNS", "summary_row", "summary_rows",
           "update_summary", "write_summary", "summary_figure",
           "write_index", "MAX_REPORT_PATTERNS"]

#: The columns of ``summary.csv``, in order.
SUMMARY_COLUMNS = (
    "stem", "class", "class_probability", "class_2", "class_2_probability",
    "radius_nm", "stretch", "orientation_axis_zyx", "orientation_angle_deg",
    "loss_network", "loss_refined", "confidence", "warning", "frame", "input")

#: Patterns shown one by one in ``index.html`` (the table lists every one).
MAX_REPORT_PATTERNS = 200
_LOCK = ".summary.lock"
_NOT_RESULTS = {"summary"}


def _natural(stem: str):
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)]


def _num(x, digits=6):
  if x is None:
    return ""
  x = float(x)
  return "" if not math.isfinite(x) else f"{x:.{digits}g}"


def summary_row(stem: str, record: dict) -> dict:
  """The row of one result record (``STEM.json``): strings, '' when absent.

  ``class``: the shape network's top class (``shape_classes``), else a
  fit's best class; ``radius_nm``: the record's ``radius_nm``, else the
  equivalent radius of its ``volume_nm3``.
  """
  classes = record.get("shape_classes") or []
  if not classes and record.get("best_class"):
    classes = [{"class": record["best_class"], "probability": None}]
  radius = record.get("radius_nm")
  if radius is None and record.get("volume_nm3"):
    radius = (3 * record["volume_nm3"] / (4 * math.pi)) ** (1 / 3)
  orient = record.get("orientation") or {}
  loss_refined = record.get("loss_refined", record.get("loss"))
  return {
      "stem": stem,
      "class": classes[0]["class"] if classes else "",
      "class_probability": _num(classes[0]["probability"] if classes
                                else None, 4),
      "class_2": classes[1]["class"] if len(classes) > 1 else "",
      "class_2_probability": _num(classes[1]["probability"]
                                  if len(classes) > 1 else None, 4),
      "radius_nm": _num(radius, 5),
      "stretch": _num(record.get("stretch"), 4),
      "orientation_axis_zyx": " ".join(_num(a, 4) for a in
                                       orient.get("axis_zyx", [])),
      "orientation_angle_deg": _num(orient.get("angle_deg"), 4),
      "loss_network": _num(record.get("loss_network")),
      "loss_refined": _num(loss_refined),
      "confidence": _num(record.get("confidence"), 4),
      # The input's own warning (a dark level that flattens the pattern)
      # too: the table is where a run's results are filtered.
      "warning": " ".join(w for w in (record.get("reconstruction_warning"),
                                      record.get("shape_warning"),
                                      record.get("warning")) if w),
      "frame": "" if record.get("frame") is None else str(record["frame"]),
      "input": record.get("input", ""),
  }


def _result_files(out_dir: str) -> dict[str, str]:
  out = {}
  for path in glob.glob(os.path.join(glob.escape(out_dir), "*.json")):
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem not in _NOT_RESULTS:
      out[stem] = path
  return out


def summary_rows(out_dir: str) -> list[dict]:
  """One :func:`summary_row` per result record in ``out_dir``, in natural
  stem order (``run_frame2`` before ``run_frame10``); files that are not
  result records are left out."""
  rows = []
  for stem, path in _result_files(out_dir).items():
    try:
      rec = records.read_result_json(path)
    except ValueError:
      continue
    rows.append(summary_row(stem, rec))
  return sorted(rows, key=lambda r: _natural(r["stem"]))


@contextlib.contextmanager
def _locked(out_dir: str):
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, _LOCK), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _read_table(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    if tuple(reader.fieldnames or ()) != SUMMARY_COLUMNS:
      return []                       # another layout: rebuilt from scratch
    # A row torn by a kill mid-write has too few (or too many) fields.
    return [r for r in reader if None not in r and r.get("stem")
            and None not in r.values()]


def _write_table(path: str, rows: list[dict]) -> None:
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
  w.writeheader()
  w.writerows(rows)
  with atomic_write(path, "w") as f:
    f.write(buf.getvalue())


def update_summary(out_dir: str, stems) -> None:
  """Merge the rows of ``stems`` (their ``STEM.json`` just written) into
  ``DIR/summary.csv``; rewritten whole and atomically, under the lock."""
  new = {}
  for stem in stems:
    path = os.path.join(out_dir, f"{stem}.json")
    try:
      new[stem] = summary_row(stem, records.read_result_json(path))
    except ValueError:
      continue
  with _locked(out_dir):
    table = os.path.join(out_dir, "summary.csv")
    rows = {r["stem"]: r for r in _read_table(table)}
    rows.update(new)
    _write_table(table, sorted(rows.values(),
                               key=lambda r: _natural(r["stem"])))


def _thickness(density_path: str, geometry: Geometry):
  try:
    vol = np.load(density_path, mmap_mode="r")
  except (OSError, ValueError):
    return None
  return (np.asarray(vol) > 0.5).sum(axis=0) * geometry.voxel_nm


def summary_figure(rows: list[dict], out_dir: str,
                   geometry: Geometry = Geometry(), gallery: int = 24):
  """Class histogram, radius distribution and a gallery of the first
  ``gallery`` shapes (thickness along the beam) of a run's rows."""
  from matplotlib.figure import Figure
  cols = 8
  n_gal = min(gallery, len(rows))
  gal_rows = math.ceil(n_gal / cols)
  fig = Figure(figsize=(16, 4 + 2.1 * gal_rows))
  gs = fig.add_gridspec(1 + gal_rows, cols, height_ratios=[2.2] + [1] * gal_rows)
  ax = fig.add_subplot(gs[0, :4])
  names = [r["class"] or "(none)" for r in rows]
  uniq = sorted(set(names), key=lambda c: -names.count(c))
  ax.barh(range(len(uniq)), [names.count(c) for c in uniq], color="tab:blue")
  ax.set_yticks(range(len(uniq)), uniq, fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("patterns")
  ax.set_title(f"classes ({len(rows)} patterns)")
  ax = fig.add_subplot(gs[0, 5:])
  radii = [float(r["radius_nm"]) for r in rows if r["radius_nm"]]
  if radii:
    ax.hist(radii, bins=min(30, max(5, len(radii) // 3)), color="tab:orange")
  ax.set_xlabel("equivalent radius (nm)")
  ax.set_ylabel("patterns")
  ax.set_title("size distribution")
  half = geometry.box_nm / 2
  for i, row in enumerate(rows[:n_gal]):
    a = fig.add_subplot(gs[1 + i // cols, i % cols])
    t = _thickness(os.path.join(out_dir, f"{row['stem']}_density.npy"),
                   geometry)
    if t is not None:
      a.imshow(t, cmap="viridis", extent=(-half, half, -half, half),
               origin="lower")
    a.set_title(f"{row['stem']}\n{row['class']}", fontsize=6)
    a.axis("off")
  fig.tight_layout()
  return fig


_SORT_JS = """
document.querySelectorAll('table.runs th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.from(body.rows);
    var asc = th.dataset.order !== 'asc';
    th.dataset.order = asc ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y, undefined,
          {numeric: true}) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_CSS = """
body { font-family: sans-serif; margin: 1.5em; }
table.runs { border-collapse: collapse; font-size: 12px; }
table.runs th { cursor: pointer; background: #eee; position: sticky; top: 0; }
table.runs td, table.runs th { border: 1px solid #ccc; padding: 2px 6px; }
tr.flagged td { background: #fff1f0; }
.pattern { display: inline-block; margin: 6px; font-size: 12px;
           vertical-align: top; }
"""

_TABLE_COLUMNS = ("stem", "class", "class_probability", "radius_nm",
                  "stretch", "orientation_angle_deg", "loss_network",
                  "loss_refined", "confidence", "warning")


def _data_uri(path: str) -> str | None:
  try:
    with open(path, "rb") as f:
      return "data:image/png;base64," + base64.b64encode(f.read()).decode()
  except OSError:
    return None


def _mesh_trace(density_path: str, geometry: Geometry, visible: bool):
  import plotly.graph_objects as go
  from msftnet import report
  try:
    vol = np.load(density_path, mmap_mode="r")
  except (OSError, ValueError):
    return None
  surface = report.isosurface(vol, geometry, 0.5, step_size=2)
  if surface is None:
    return None
  verts, faces = surface
  z, y, x = verts.T
  return go.Mesh3d(x=np.round(x, 2), y=np.round(y, 2), z=np.round(z, 2),
                   i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                   color="#c9a227", flatshading=True, visible=visible,
                   lighting=dict(ambient=0.35, diffuse=0.8, specular=0.3),
                   hoverinfo="skip")


def _shape_view(rows: list[dict], out_dir: str, geometry: Geometry) -> str:
  import plotly.graph_objects as go
  traces, stems, reach = [], [], []
  for row in rows:
    t = _mesh_trace(os.path.join(out_dir, f"{row['stem']}_density.npy"),
                    geometry, visible=not traces)
    if t is not None:
      traces.append(t)
      stems.append(row["stem"])
      extent = max(np.abs(t.x).max(), np.abs(t.y).max(), np.abs(t.z).max())
      reach.append(float(min(geometry.box_nm / 2,
                             1.15 * extent + geometry.voxel_nm)))
  if not traces:
    return "<p>No shapes to show.</p>"

  def axes(half):             # axes around the shape: small ones stay visible
    return {f"scene.{a}axis.range": [-half, half] for a in "xyz"}

  buttons = [dict(label=s, method="update",
                  args=[{"visible": [j == i for j in range(len(traces))]},
                        {"title.text": f"{s} (nm; beam along +z)",
                         **axes(reach[i])}])
             for i, s in enumerate(stems)]
  fig = go.Figure(traces)
  fig.update_layout(
      title=dict(text=f"{stems[0]} (nm; beam along +z)", x=0.3),
      height=560, width=760,
      scene=dict(xaxis_title="x", yaxis_title="y", zaxis_title="z (beam)",
                 aspectmode="cube"),
      updatemenus=[dict(buttons=buttons, x=0.0, y=1.1, xanchor="left",
                        direction="down")],
      margin=dict(l=0, r=0, t=60, b=0))
  fig.update_layout(axes(reach[0]))
  return fig.to_html(full_html=False, include_plotlyjs=False,
                     div_id="shapes", config={"displaylogo": False})


def write_index(out_dir: str, rows: list[dict],
                geometry: Geometry = Geometry(), title: str = "") -> str:
  """Write ``DIR/index.html`` (module docstring); returns its path."""
  from plotly.offline import get_plotlyjs
  shown = rows[:MAX_REPORT_PATTERNS]
  title = title or f"msftnet run: {os.path.basename(os.path.abspath(out_dir))}"
  head = "".join(f"<th>{html.escape(c)}</th>" for c in _TABLE_COLUMNS)
  body = []
  for r in rows:
    cls = ' class="flagged"' if r["warning"] else ""
    cells = "".join(
        f'<td data-v="{html.escape(r[c], quote=True)}">'
        f'{html.escape(r[c] if c != "warning" else ("yes" if r[c] else ""))}'
        "</td>" for c in _TABLE_COLUMNS)
    body.append(f'<tr id="row-{html.escape(r["stem"])}"{cls}>{cells}</tr>')
  patterns = []
  for r in shown:
    uri = _data_uri(os.path.join(out_dir, f"{r['stem']}_patterns.png"))
    img = (f'<img src="{uri}" alt="input and simulated pattern of '
           f'{html.escape(r["stem"])}" width="256" height="128">' if uri
           else "<em>no pattern image</em>")
    patterns.append(
        f'<div class="pattern" data-stem="{html.escape(r["stem"])}">'
        f"<b>{html.escape(r['stem'])}</b> {html.escape(r['class'])}"
        f"<br>{img}<br>input | simulated</div>")
  more = (f"<p>The first {len(shown)} of {len(rows)} patterns are shown "
          "below; the table lists all.</p>" if len(shown) < len(rows) else "")
  page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{len(rows)} patterns; {sum(bool(r['warning']) for r in rows)} flagged
(shaded: read the warning in the pattern's JSON before using the shape).
Click a column's header to sort. Files: <code>summary.csv</code>,
<code>summary.png</code>, per pattern <code>STEM.json</code>.</p>
<table class="runs"><thead><tr>{head}</tr></thead>
<tbody>{''.join(body)}</tbody></table>
<h2>Shapes</h2>{_shape_view(shown, out_dir, geometry)}
<h2>Patterns</h2>{more}{''.join(patterns)}
<script>{_SORT_JS}</script>
</body></html>
"""
  path = os.path.join(out_dir, "index.html")
  with atomic_write(path, "w") as f:
    f.write(page)
  return path


def write_summary(out_dir: str, geometry: Geometry = Geometry(), *,
                  figure: bool = True, index: bool = True) -> list[dict]:
  """The complete ``summary.csv`` from every result in ``out_dir``, and
  (unless switched off) ``summary.png`` and ``index.html``; all under the
  lock. Returns the rows."""
  from msftnet import report
  with _locked(out_dir):
    rows = summary_rows(out_dir)
    _write_table(os.path.join(out_dir, "summary.csv"), rows)
    if figure and rows:
      report.save_figure(summary_figure(rows, out_dir, geometry),
                         os.path.join(out_dir, "summary.png"))
    if index and rows:
      write_index(out_dir, rows, geometry)
  return rows
