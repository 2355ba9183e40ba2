"""Runs over many measured inputs: the work of ``msftnet reconstruct`` and
``msftnet fit`` as library functions.

The inputs are :class:`msftnet.measured.Frame` s (``stem``, ``path``,
``pattern [M, M]``, ``valid [M, M]``, ``info``): a list from
:func:`msftnet.measured.load_many`, or a stream from
:func:`msftnet.measured.read_frames` (the launchers: a run is read one
frame at a time, so memory stays flat), whose unusable frames come as
``(path, sentence)``. For each input ``STEM`` a run writes
``OUT/STEM_density.npy``, ``OUT/STEM.png`` (unless ``figures=False``),
``OUT/STEM.obj`` (or ``.stl``, ``.ply``: ``mesh=FORMAT``) and ``OUT/STEM.json`` last (atomically: its
presence marks a finished input, :func:`select_work` skips it). An input
whose results cannot be written is added to the errors and the run goes on.
A progress bar (tqdm: rate, ETA) is shown on stderr unless ``progress=False``.
A reconstruction that should not be trusted (empty, or refined to a worse
explanation than the network's: :func:`msftnet.refine.trust.result_warning`)
is still written, with ``reconstruction_warning`` in ``STEM.json`` and a
``warning:`` line on stderr.

* :func:`select_work`: this process's share of the inputs, without the
  finished ones (several processes can share one output folder);
* :func:`reconstruct_inputs`: network + refinement, in chunks of ``batch``;
* :func:`fit_inputs`: the forward fit of parametrised solids.

Both keep the run's table ``OUT/summary.csv`` up to date as they go and
end with the complete table, ``summary.png`` and ``index.html``
(:mod:`msftnet.run_report`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from msftnet import fitting
from msftnet import measured
from msftnet import metrics as metrics_lib
from msftnet import reconstruct as recon
from msftnet import report
from msftnet import run_report
from msftnet.refine import trust
from msftnet.refine.base import RefineConfig

__all__ = ["select_work", "reconstruct_inputs", "reconstruction_record",
           "shape_fields",
           "warning_of",
           "fit_inputs", "fit_record"]


def select_work(good, out_dir: str, *, process_id: int = 0,
                num_processes: int = 1, overwrite: bool = False):
  """This process's share of the inputs, without the finished ones.

  ``good``: anything with a ``stem`` (:class:`msftnet.measured.FrameRef`
  s before reading, or :class:`msftnet.measured.Frame` s). Entry ``i`` of
  ``good`` belongs to process ``i % num_processes`` (all
  processes may write into one folder: the stems are unique). An entry whose
  ``OUT/STEM.json`` exists is finished and skipped unless ``overwrite``.
  Returns ``(todo, skipped_stems)``.
  """
  if not 0 <= process_id < num_processes:
    raise ValueError(f"--process_id must lie in [0, {num_processes}), got "
                     f"{process_id}.")
  mine = [g for i, g in enumerate(good) if i % num_processes == process_id]
  if overwrite:
    return mine, []
  done = [g.stem for g in mine
          if os.path.exists(os.path.join(out_dir, f"{g.stem}.json"))]
  return [g for g in mine if g.stem not in set(done)], done


#: What the candidates' ``loss`` in ``STEM.json`` is, per objective of
#: the polytope refinement (:func:`candidate_loss_is`).
CANDIDATE_LOSS = {
    "affine_log": "the refinement's objective: mean squared difference of "
                  "the log patterns inside the valid pixels, scale and "
                  "offset fitted (msftnet.refine.measurement."
                  "affine_masked_mse)",
    "poisson": "the refinement's objective: Poisson deviance of the photon "
               "counts per valid pixel, scale fitted (about 1 at high counts "
               "when only shot noise is left; msftnet.refine.measurement."
               "poisson_deviance)",
}
_MASKED_LOSS = ("the masked loss: mean squared difference of the log "
                "patterns inside the valid pixels, dark level fitted "
                "(msftnet.refine.measurement.masked_mse)")


def candidate_loss_is(config: RefineConfig) -> str:
  """What the candidates' ``loss`` of a reconstruction with ``config`` is:
  the polytope refinement's objective, or the masked loss (the network
  alone, the voxel refinement)."""
  if config.steps == 0 or config.method != "polytope":
    return _MASKED_LOSS
  return CANDIDATE_LOSS[config.objective]


def reconstruction_record(out, j: int, frame, *, model_path: str,
                          config: RefineConfig, geometry,
                          experimental: bool, seconds: float) -> dict:
  """What ``OUT/STEM.json`` of a reconstruction holds: result ``j`` of the
  :class:`msftnet.reconstruct.Reconstruction` ``out`` of ``frame`` (a
  :class:`msftnet.measured.Frame`); written with its schema version by
  :func:`msftnet.records.write_result_json`."""
  return {
      "input": os.path.abspath(frame.path), **frame.info,
      "model": model_path, "method": config.method,
      "refine_steps": config.steps,
      "refine_config": dataclasses.asdict(config),
      "geometry": geometry.to_dict(),
      "start": str(out.start_name[j]),
      # 2: two touching bodies explained the pattern clearly better than
      # one convex body (RefineConfig.two_bodies).
      "bodies": int(out.signals[j].get("bodies", 1)),
      "centre_shift_px": [int(x) for x in out.centre_shift[j]],
      "centre_offset_px": [round(float(x), 3) for x in out.centre_offset[j]],
      "candidates": [{"start": str(name), "loss": float(loss)}
                     for name, loss in zip(out.candidate_name[j],
                                           out.candidate_loss[j])
                     if name != ""],           # "": a batch's padding
      "candidate_loss_is": candidate_loss_is(config),
      "experimental": experimental,
      "valid_fraction": float(frame.valid.mean()),
      "loss_network": float(out.network_paper_loss[j]),
      "loss_start": float(out.paper_loss_before[j]),
      "loss_refined": float(out.paper_loss_after[j]),
      "masked_loss_network": float(out.network_loss[j]),
      "masked_loss_start": float(out.loss_before[j]),
      "masked_loss_refined": float(out.loss_after[j]),
      "dark_level_log10": float(out.dark_level[j]),
      "volume_nm3": float(out.density[j].sum() * geometry.voxel_nm ** 3),
      "confidence": float(out.confidence[j]),
      "confidence_reasons": list(out.confidence_reasons[j]),
      "confidence_calibrated": (trust.calibration_note(
          config.method, config.steps, config.objective) is None
                                and "bodies" not in out.signals[j]),
      "trust_signals": dict(out.signals[j]),
      "seconds": seconds,
      "loss_protocol": metrics_lib.PAPER_PROTOCOL,
      **shape_fields(out.shape[j], trust.equivalent_radius(out.density[j])
                     * geometry.box_nm),
  }


def shape_fields(estimate, recon_r: float) -> dict:
  """What ``STEM.json`` says the particle is: the shape network's ranked
  ``shape_classes``, ``radius_nm``, ``stretch`` and ``orientation``
  (:meth:`msftnet.shape_net.ShapeEstimate.to_json`; absent without a shape
  model), and ``radius_nm_reconstruction``, ``recon_r``: the equivalent
  radius (nm) of the reconstruction's volume
  (:func:`msftnet.refine.trust.equivalent_radius`); ``shape_warning`` when
  a radius the network read disagrees with it by more than
  :data:`SHAPE_RADIUS_AGREEMENT`: its reading of the measured pattern (the
  pattern is unlike its training data) or of the fitted answer's own
  pattern (the network misreads even that); and when the pattern's top
  class is not among the fitted answer's top 3 (the class is uncertain)."""
  out = {} if estimate is None else estimate.to_json()
  recon_r = float(recon_r)
  out["radius_nm_reconstruction"] = recon_r
  if estimate is None:
    return out

  def disagrees(r):
    return not (recon_r > 0 and abs(np.log(r / recon_r))
                <= np.log(SHAPE_RADIUS_AGREEMENT))

  said = []
  if disagrees(estimate.radius_nm):
    said.append(
        f"the shape network's radius ({estimate.radius_nm:.0f} nm) disagrees "
        f"with the reconstruction's ({recon_r:.0f} nm) by more than "
        f"{SHAPE_RADIUS_AGREEMENT:.2f}x: its class and orientation are "
        "likely wrong" + (" (a pattern unlike its training data?)"
                          if estimate.source == "pattern" else
                          " (it misreads even the answer's own pattern)"))
  seen = estimate.pattern_reading
  if seen is not None and disagrees(seen.radius_nm):
    said.append(
        f"the shape network's reading of the measured pattern itself gives "
        f"a radius of {seen.radius_nm:.0f} nm against the reconstruction's "
        f"{recon_r:.0f} nm (more than {SHAPE_RADIUS_AGREEMENT:.2f}x): the "
        "pattern is unlike its training data (the classes given are read "
        "off the fitted answer)")
  if seen is not None and seen.classes[0][0] not in [
      c for c, _ in estimate.classes[:3]]:
    # The two readings disagree: on the barke patterns, where the reported
    # top class is wrong in all four, they always did (docs/results.md,
    # "The class of the fitted answer").
    said.append(
        f"the shape network reads the measured pattern as "
        f"{seen.classes[0][0]}, which is not among the fitted answer's "
        f"top 3 classes ({', '.join(c for c, _ in estimate.classes[:3])}): "
        "the class is uncertain, whatever its probability")
  if said:
    out["shape_warning"] = "; ".join(said)
  return out


#: Largest ratio between the shape network's radius and the
#: reconstruction's before ``shape_warning`` is set (docs/results.md).
SHAPE_RADIUS_AGREEMENT = 1.5


def warning_of(out, j: int) -> str | None:
  """The ``reconstruction_warning`` of result ``j`` of ``out``, or None:
  :func:`msftnet.refine.trust.result_warning` (an empty volume, or a far
  worse explanation than the network's), else
  :func:`msftnet.refine.trust.warning` (a low confidence, or structured
  residuals)."""
  return (trust.result_warning(out.density[j], out.loss_after[j],
                               out.network_loss[j])
          or trust.warning(out.signals[j], float(out.confidence[j])))


def _chunks(frames, size: int, errors: list, objective: str = "affine_log",
            steps: int = 0):
  """Lists of up to ``size`` :class:`msftnet.measured.Frame` s from an
  iterable that may also yield ``(path, sentence)`` errors (added to
  ``errors``): a run streams, one chunk in memory at a time. With the
  Poisson ``objective`` (and a refinement, ``steps``), a frame not read as
  counts is an error too."""
  chunk = []
  for item in frames:
    if isinstance(item, tuple):
      errors.append(item)
      continue
    if (objective == "poisson" and steps
        and measured.photons_of(item.info) is None):
      errors.append((item.path, f"{item.stem}: the Poisson objective needs "
                     f"photon counts, but {measured.why_no_photons(item.info)}."))
      continue
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def reconstruct_inputs(good, out_dir: str, model, *,
                       config: RefineConfig, geometry=None,
                       batch: int = 32, mesh: str | None = None,
                       figures: bool = True, experimental: bool = False,
                       progress: bool = True, total: int | None = None,
                       summary: bool = True) -> tuple[list[str], list]:
  """Reconstruct every input of ``good`` into ``out_dir``.

  ``good``: :class:`msftnet.measured.Frame` s, a list or any iterable (a
  stream from :func:`msftnet.measured.read_frames`, which may also yield
  ``(path, sentence)`` errors; ``total`` then sizes the progress bar);
  ``config.steps`` refinement steps (0: the network alone, which then runs
  on chunks of ``batch`` patterns together); ``geometry``: the physics of
  the refinement (default: the model's). With ``summary`` the run's table
  ``OUT/summary.csv`` is brought up to date after every chunk, and at the
  end rebuilt from every result in ``out_dir`` with ``summary.png`` and
  ``index.html`` (not with ``figures=False``):
  :mod:`msftnet.run_report`. Returns ``(stems written, errors)``, the
  errors as ``(path, sentence)``.
  """
  geometry = model.geometry if geometry is None else geometry
  written, errors = [], []
  if total is None and hasattr(good, "__len__"):
    total = len(good)
  with tqdm(total=total, unit="pattern", desc="reconstruct",
            disable=not progress) as bar:
    for chunk in _chunks(good, batch, errors, config.objective,
                         config.steps):
      t = time.perf_counter()
      out = recon.reconstruct(np.stack([c.pattern for c in chunk]),
                              np.stack([c.valid for c in chunk]), model=model,
                              config=config, geometry=geometry,
                              photons=[measured.photons_of(c.info)
                                       for c in chunk])
      seconds = (time.perf_counter() - t) / len(chunk)
      for j, frame in enumerate(chunk):
        stem, path = frame.stem, frame.path
        record = reconstruction_record(
            out, j, frame, model_path=model.path, config=config,
            geometry=geometry, experimental=experimental, seconds=seconds)
        warning = warning_of(out, j)
        if "shape_warning" in record:
          tqdm.write(f"warning: {path} ({stem}): {record['shape_warning']}",
                     file=sys.stderr)
        if warning:
          record["reconstruction_warning"] = warning
          where = path if stem == measured.stem_of(path) else f"{path} ({stem})"
          tqdm.write(f"warning: {where}: {warning}", file=sys.stderr)
        title = (f"{stem}: loss {record['loss_network']:.2e} (network) -> "
                 f"{record['loss_refined']:.2e} ({config.method}, best start "
                 f"{record['start']}, {config.steps} steps)")
        if report.try_write_result(
            out_dir, stem, path, errors, density=out.density[j],
            pattern=frame.pattern, valid=frame.valid,
            simulated=out.pattern[j],
            metrics=record, title=title, mesh=mesh, geometry=geometry,
            figure=figures):
          written.append(stem)
        bar.update(1)
      if summary:
        run_report.update_summary(out_dir, [c.stem for c in chunk])
  if summary:
    run_report.write_summary(out_dir, geometry, figure=figures, index=figures)
  return written, errors


def fit_record(result: fitting.FitResult, path: str, valid, seconds,
               scale_info=None, geometry=None, config=None) -> dict:
  """What ``OUT/STEM.json`` of a forward fit holds."""
  best = result.best
  return {
      "input": os.path.abspath(path), **(scale_info or {}),
      **({"fit_config": dataclasses.asdict(config)} if config else {}),
      **({"geometry": geometry.to_dict()} if geometry is not None else {}),
      "best_class": best.polyhedron,
      "loss": best.paper_loss,
      "masked_loss": best.loss,
      "circumradius_nm": best.circumradius_nm,
      "stretch": best.stretch,
      "stretch_dir_body_zyx": list(best.stretch_dir),
      "rotation_body_to_box": [list(r) for r in best.rotation],
      "dark_level_log10": best.dark_level,
      "valid_fraction": float(valid.mean()),
      "per_class": {f.polyhedron: {"loss": f.paper_loss,
                                   "masked_loss": f.loss,
                                   "circumradius_nm": f.circumradius_nm,
                                   "stretch": f.stretch}
                    for f in result.per_class},
      "seconds": seconds,
      "loss_protocol": metrics_lib.PAPER_PROTOCOL,
  }


def fit_inputs(good, out_dir: str, *, config: fitting.FitConfig,
               geometry, mesh: str | None = None, figures: bool = True,
               progress: bool = True, summary: bool = True
               ) -> tuple[list[str], list]:
  """Forward-fit every input of ``good`` into ``out_dir`` (one bar step per
  fitted class); the run's table and report as
  :func:`reconstruct_inputs`. Returns ``(stems written, errors)``."""
  written, errors = [], []
  with tqdm(total=len(good) * config.class_fits, unit="class", desc="fit",
            disable=not progress) as bar:
    for frame in good:
      stem, path, pattern, valid = (frame.stem, frame.path, frame.pattern,
                                    frame.valid)
      t = time.perf_counter()
      bar.set_postfix_str(stem)
      result = fitting.fit(pattern, valid, config=config, geometry=geometry,
                           progress=lambda i, total, cf: bar.update(1))
      seconds = time.perf_counter() - t
      record = fit_record(result, path, valid, seconds, frame.info, geometry,
                          config)
      b = result.best
      title = (f"{stem}: best fit {b.polyhedron}, R {b.circumradius_nm:.0f} "
               f"nm, stretch {b.stretch:.2f}, loss {b.paper_loss:.2e}")
      if report.try_write_result(
          out_dir, stem, path, errors, density=result.density,
          pattern=pattern, valid=valid, simulated=result.pattern,
          metrics=record, title=title, mesh=mesh, geometry=geometry,
          figure=figures):
        written.append(stem)
        if summary:
          run_report.update_summary(out_dir, [stem])
  if summary:
    run_report.write_summary(out_dir, geometry, figure=figures, index=figures)
  return written, errors
