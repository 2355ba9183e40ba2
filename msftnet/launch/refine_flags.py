"""The refinement's flags, defined once for every launcher that refines.

``define()`` defines ``--refine_steps``, ``--method``, ``--coarse_steps``
and ``--refine`` (``FIELD=VALUE,...`` of
:class:`msftnet.refine.RefineConfig`, read by :func:`parse_refine_config`)
and returns a function that reads them into a ``RefineConfig``
(``ValueError``, one sentence, for bad values); ``experiments.reconstruct``
adds ``--start`` through its ``extra`` fields.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Callable

from absl import flags

from msftnet import refine
from msftnet.refine import RefineConfig

__all__ = ["define", "parse_refine_config"]


def _split_top_level(text: str) -> list[str]:
  """Split at commas outside parentheses and brackets."""
  parts, depth, cur = [], 0, ""
  for ch in text:
    depth += (ch in "([") - (ch in ")]")
    if ch == "," and depth == 0:
      parts.append(cur)
      cur = ""
    else:
      cur += ch
  return [p for p in parts + [cur] if p.strip()]


def parse_refine_config(text: str, base: RefineConfig | None = None
                        ) -> RefineConfig:
  """``"FIELD=VALUE,..."`` (Python literals) -> ``base`` with those fields.

  The form of the launchers' ``--refine`` flags, e.g. ``"keep=3,planes=48"``
  or ``"radius_bands=((0.04, 0.1), (0.1, 0.45))"``; a text field may be
  given bare (``profile=ramp``); an empty string gives ``base`` (default:
  ``RefineConfig()``).
  """
  base = RefineConfig() if base is None else base
  changes = {}
  fields = {f.name for f in dataclasses.fields(RefineConfig)}
  for item in _split_top_level(text):
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or key not in fields:
      raise ValueError(f"Refinement setting {item.strip()!r}: expected "
                       f"FIELD=VALUE with FIELD one of {sorted(fields)}.")
    try:
      changes[key] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      if isinstance(getattr(base, key), str) and value.strip().isidentifier():
        changes[key] = value.strip()
        continue
      raise ValueError(f"Refinement setting {item.strip()!r}: the value is "
                       "not a Python literal (number, string, tuple).") from None
  for key, value in changes.items():
    want = type(getattr(base, key))
    if not (isinstance(value, want) or (want is float and
                                        type(value) is int)):
      raise ValueError(f"Refinement setting {key}={value!r}: expected type "
                       f"{want.__name__}.")
  return dataclasses.replace(base, **changes)



def define() -> Callable[..., RefineConfig]:
  """Define the refinement flags; returns their reader, ``read(**extra)``
  (``extra``: further ``RefineConfig`` fields from a launcher's own flags,
  which ``--refine`` overrides)."""
  d = RefineConfig
  steps = flags.DEFINE_integer("refine_steps", d.steps,
                               "Refinement steps (0: the network alone).")
  method = flags.DEFINE_enum("method", d.method, sorted(refine.METHODS),
                             "Refinement method (msftnet.refine): convex "
                             "polytopes or free voxels.")
  coarse = flags.DEFINE_integer("coarse_steps", d.coarse_steps,
                                "Polytope refinement: coarse-stage steps.")
  text = flags.DEFINE_string(
      "refine", "", "Further refinement settings, FIELD=VALUE,... of "
      "msftnet.refine.RefineConfig (e.g. planes=32,keep=3).")

  def read(**extra) -> RefineConfig:
    return parse_refine_config(text.value, RefineConfig(
        steps=steps.value, method=method.value, coarse_steps=coarse.value,
        **extra))

  return read
