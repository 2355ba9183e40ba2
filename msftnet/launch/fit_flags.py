"""The forward fit's flags, defined once for every launcher that fits.

``define(prefix)`` defines ``--{prefix}classes``, ``--{prefix}starts``,
``--{prefix}steps``, ``--{prefix}coarse_steps``, ``--{prefix}keep``,
``--{prefix}coarse_survivors`` and ``--{prefix}seed`` (defaults: those of
:class:`msftnet.fitting.FitConfig`) and returns a function that reads them
into a ``FitConfig`` (``ValueError``, one sentence, for bad values).
``experiments.fit`` uses no prefix, ``experiments.evaluate`` ``fit_``
(its own ``--coarse_steps`` belongs to the refinement).
"""

from __future__ import annotations

from typing import Callable

from absl import flags

from msftnet import fitting


def define(prefix: str = "") -> Callable[[], fitting.FitConfig]:
  """Define the fit flags with ``prefix``; returns their reader."""
  d = fitting.FitConfig

  def what(text):
    return f"Forward fit: {text}" if prefix else text[0].upper() + text[1:]

  classes = flags.DEFINE_list(f"{prefix}classes", list(fitting.FIT_CLASSES),
                              what("classes to fit (comma-separated)."))
  starts = flags.DEFINE_integer(f"{prefix}starts", d.starts,
                                what("random starts per class."))
  steps = flags.DEFINE_integer(
      f"{prefix}steps", d.steps, what(
          "Adam steps on the full problem (per start when there is no "
          "coarse stage)."))
  coarse = flags.DEFINE_integer(
      f"{prefix}coarse_steps", d.coarse_steps, what(
          "Adam steps per start on the coarse problem (0: no coarse stage, "
          "every start on the full problem)."))
  keep = flags.DEFINE_integer(f"{prefix}keep", d.keep,
                              what("classes continued on the full problem."))
  survivors = flags.DEFINE_integer(
      f"{prefix}coarse_survivors", d.coarse_survivors,
      what("successive halving in the coarse stage: every start for half "
           "the coarse steps, the best K of each class for the rest (0: off)."))
  seed = flags.DEFINE_integer(f"{prefix}seed", d.seed,
                              what("seed of the random starts."))

  def read() -> fitting.FitConfig:
    return fitting.FitConfig(
        starts=starts.value, steps=steps.value, coarse_steps=coarse.value,
        keep=keep.value, coarse_survivors=survivors.value, seed=seed.value,
        classes=tuple(classes.value))

  return read
