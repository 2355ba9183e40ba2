r"""Draw one pattern through every augmentation filter (the paper's Fig. 2).

  python -m experiments.show_augmentations --out=augmentations.png [--seed=0]
      [--pattern=FILE]

The pattern defaults to the MSFT of the built-in solid of
``experiments.simulate``; ``--pattern`` takes a PNG or ``.npy`` pattern
instead. Each panel shows the filtered pattern with the pixels its valid mask
marks as destroyed shaded in red. Runtime: ~10 s on a laptop CPU.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
import jax
from matplotlib.figure import Figure
import numpy as np

from msftnet.solids import example_density
from msftnet import Geometry
from msftnet import augment
from msftnet import paper_io
from msftnet import simulate_pattern

_OUT = flags.DEFINE_string("out", "augmentations.png", "Output figure (PNG).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed for the filter parameters.")
_PATTERN = flags.DEFINE_string("pattern", None,
                               "Pattern to filter (PNG or .npy); default: the "
                               "built-in solid's simulated pattern.")


def figure(pattern: np.ndarray, seed: int):
  """The figure: original plus one panel per filter, invalid pixels in red."""
  names = ("original",) + augment.FILTER_NAMES
  fig = Figure(figsize=(15, 6.6))
  axes = fig.subplots(2, 6)
  key = jax.random.key(seed)
  for ax, name, k in zip(axes.flat, names, jax.random.split(key, len(names))):
    if name == "original":
      out, valid = pattern, np.ones(pattern.shape, bool)
    else:
      # Jitted: one compilation per filter instead of one per operation.
      out, valid = map(np.asarray, jax.jit(augment.FILTERS[name])(k, pattern))
    rgb = np.repeat(np.asarray(out)[..., None], 3, axis=-1)
    shade = np.array([0.85, 0.1, 0.1])
    rgb[~valid] = 0.45 * rgb[~valid] + 0.55 * shade
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(f"{name}\nvalid {valid.mean():.0%}", fontsize=9)
    ax.set_axis_off()
  axes.flat[-1].set_axis_off()
  fig.suptitle("Detector artefacts (red: pixels the valid mask marks as "
               "destroyed)", fontsize=11)
  fig.tight_layout(h_pad=2.0)
  return fig


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    if _PATTERN.value:
      pattern = paper_io.read_pattern(_PATTERN.value)
    else:
      pattern = np.asarray(simulate_pattern(example_density(64), Geometry()))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  fig = figure(pattern, _SEED.value)
  with paper_io.atomic_write(_OUT.value) as f:
    fig.savefig(f, format="png", dpi=110)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
